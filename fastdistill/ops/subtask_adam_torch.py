"""Torch backend of ``subtask_adam_step`` (the CPU default): torch.optim.Adam's in-place arithmetic vectorised over the
active rows (on CUDA it synchronises once to find them)."""

from __future__ import annotations

import torch


def subtask_adam_step_torch(param, grad, exp_avg, exp_avg_sq, step, lr, active, lo, hi, beta1, beta2, eps) -> None:
    """Torch implementation: torch.optim.Adam's in-place arithmetic on the active rows (gathered unless all active)."""
    rows = torch.nonzero(active).squeeze(1)
    if rows.numel() == 0:
        return
    every_row = rows.numel() == param.shape[0]
    p, g, m, v = (t if every_row else t.index_select(0, rows) for t in (param, grad, exp_avg, exp_avg_sq))
    steps = step[rows].to(torch.float64)
    neg_step_size = (-lr[rows].to(torch.float64) / (1 - torch.pow(beta1, steps))).to(torch.float32).view(-1, 1, 1, 1)
    bias_correction2_sqrt = (1 - torch.pow(beta2, steps)).sqrt().to(torch.float32).view(-1, 1, 1, 1)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    p.add_((m * neg_step_size).div_(v.sqrt().div_(bias_correction2_sqrt).add_(eps)))
    p.clamp_(lo.view(1, -1, 1, 1), hi.view(1, -1, 1, 1))
    if not every_row:
        for full, part in ((param, p), (exp_avg, m), (exp_avg_sq, v)):
            full.index_copy_(0, rows, part)
