"""The teacher-training (squeeze) augmentation: a random translation with zero padding, and optional flips."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def translate_flip(x: torch.Tensor, flip: bool, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (zero padding) and, if ``flip``, random horizontal flips (p 0.5)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]
    out = padded.gather(2, rows.expand(n, x.shape[1], h, padded.shape[3])).gather(3, cols.expand(n, x.shape[1], h, w))
    if flip:
        mask = torch.rand(n, generator=generator, device=x.device) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out
