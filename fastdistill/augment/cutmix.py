"""CutMix for soft-label student training (RDED/DELT): one box per batch pasted from a random partner image.

Drawing (:func:`sample_cutmix`) and pasting (:func:`apply_cutmix`) are separate so that stored draws replay exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdistill.augment.draws import randint, uniform


@dataclass(frozen=True)
class CutMixParams:
    """One batch's CutMix: ``box`` int64 [4] = rows [top, bottom) and columns [left, right) of the pasted region
    (clamped to the image; possibly empty), ``perm`` [n] the partner of every image."""

    box: torch.Tensor
    perm: torch.Tensor


def sample_cutmix(n: int, size: tuple[int, int], generator: torch.Generator) -> CutMixParams:
    """λ ~ Beta(1, 1), box side sqrt(1 - λ) of the image around a uniform centre, a random permutation of ``n``."""
    h, w = int(size[0]), int(size[1])
    g = generator
    lam = uniform(1, g)
    cut = torch.sqrt(1 - lam)
    ch, cw = torch.floor(h * cut), torch.floor(w * cut)
    cy, cx = randint(0, h - 1, 1, g), randint(0, w - 1, 1, g)
    half_h, half_w = torch.div(ch, 2, rounding_mode="floor"), torch.div(cw, 2, rounding_mode="floor")
    box = torch.cat([(cy - half_h).clamp(0, h), (cy + half_h).clamp(0, h),
                     (cx - half_w).clamp(0, w), (cx + half_w).clamp(0, w)]).long()
    return CutMixParams(box, torch.randperm(n, generator=g, device=g.device))


def apply_cutmix(x: torch.Tensor, params: CutMixParams) -> torch.Tensor:
    """Paste ``params.box`` of each image's partner into it; returns a new tensor."""
    _, _, h, w = x.shape
    top, bottom, left, right = params.box.to(x.device).unbind()
    r = torch.arange(h, device=x.device)
    c = torch.arange(w, device=x.device)
    box = ((r >= top) & (r < bottom))[:, None] & ((c >= left) & (c < right))[None, :]
    return torch.where(box, x[params.perm.to(x.device)], x)


def cutmix(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """CutMix with one box per batch (labels come from the teacher on the mixed batch, so λ is not returned)."""
    return apply_cutmix(x, sample_cutmix(x.shape[0], x.shape[-2:], generator))
