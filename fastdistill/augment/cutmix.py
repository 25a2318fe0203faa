"""CutMix for soft-label student training (RDED/DELT): one box per batch pasted from a random partner image."""

from __future__ import annotations

import torch

from fastdistill.augment.draws import randint, uniform


def cutmix(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """CutMix with one box per batch: λ ~ Beta(1, 1), box side sqrt(1 - λ) of the image, a random permutation pairs
    the images. Returns a new tensor (labels come from the teacher on the mixed batch, so λ is not returned)."""
    n, _, h, w = x.shape
    g = generator
    lam = uniform(1, g)
    cut = torch.sqrt(1 - lam)
    ch, cw = torch.floor(h * cut), torch.floor(w * cut)
    cy, cx = randint(0, h - 1, 1, g), randint(0, w - 1, 1, g)
    y0, y1 = (cy - torch.div(ch, 2, rounding_mode="floor")).clamp(0, h), (cy + torch.div(ch, 2, rounding_mode="floor"))
    x0, x1 = (cx - torch.div(cw, 2, rounding_mode="floor")).clamp(0, w), (cx + torch.div(cw, 2, rounding_mode="floor"))
    r = torch.arange(h, device=x.device)
    c = torch.arange(w, device=x.device)
    box = ((r >= y0) & (r < y1.clamp(0, h)))[:, None] & ((c >= x0) & (c < x1.clamp(0, w)))[None, :]
    perm = torch.randperm(n, generator=g, device=g.device)
    return torch.where(box, x[perm], x)
