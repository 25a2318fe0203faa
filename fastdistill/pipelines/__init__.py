"""Distillation pipelines (DELT, PDD, MGD3) and the outputs they share."""
