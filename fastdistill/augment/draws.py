"""Random draws on a generator's device, shared by the augmentations."""

from __future__ import annotations

import torch


def uniform(n: int, g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """``n`` floats uniform in [lo, hi) on ``g.device``."""
    return torch.rand(n, generator=g, device=g.device) * (hi - lo) + lo


def randint(lo: int, hi: int, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` integers in [lo, hi] inclusive on ``g.device``."""
    return torch.randint(lo, hi + 1, (n,), generator=g, device=g.device)
