"""RandomResizedCrop: torchvision's box sampler, and the per-sample crop that resizes a box back to full size.

A box is drawn as torchvision draws it: up to :data:`ATTEMPTS` tries of an area fraction uniform in ``scale`` and an
aspect log-uniform in ``ratio``; the first box that fits wins, else the whole image with its aspect clamped into
``ratio``, centred. :func:`box_size` and :func:`central_box` are that geometry; two draw orders use it:

- :func:`sample_crop_boxes`: a batch of boxes on the generator's device, every try drawn up front (soft-label
  student training, :func:`random_resized_crop`);
- :func:`sample_box`: one box on a CPU generator in torchvision's own order (stops at the first fit), as DELT's
  recover draws one box per group and iteration.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastdistill.augment.draws import uniform

RATIO = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's default aspect range
ATTEMPTS = 10  # torchvision RandomResizedCrop's tries before it falls back to the central box
SOFT_LABEL_SCALE = (0.25, 1.0)  # RDED/DELT student training: RandomResizedCrop(scale=(0.25, 1))


def box_size(area: int, u_area: torch.Tensor, u_aspect: torch.Tensor, scale: tuple[float, float],
             ratio: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rounded (width, height) of boxes covering a fraction in ``scale`` of ``area`` with an aspect log-uniform in
    ``ratio``, from uniform draws ``u_area`` and ``u_aspect`` in [0, 1) (computed in their dtype)."""
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_aspect)
    return torch.sqrt(target * aspect).round(), torch.sqrt(target / aspect).round()


def fits(bw, bh, h: int, w: int):
    """Whether boxes of width ``bw`` and height ``bh`` (numbers or tensors) fit an ``h`` x ``w`` image."""
    return (bw > 0) & (bw <= w) & (bh > 0) & (bh <= h)


def central_box(h: int, w: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback box (width, height): the whole image with its aspect clamped into ``ratio``."""
    if w / h < ratio[0]:
        return w, round(w / ratio[0])
    if w / h > ratio[1]:
        return round(h * ratio[1]), h
    return w, h


def sample_crop_boxes(n: int, size: tuple[int, int], generator: torch.Generator,
                      scale: tuple[float, float] = SOFT_LABEL_SCALE, ratio: tuple[float, float] = RATIO,
                      attempts: int = ATTEMPTS) -> torch.Tensor:
    """``n`` boxes [n, 4] = (top, left, height, width) as float integers on ``generator.device``: every try's area and
    aspect drawn up front, then one top and one left per box."""
    h, w = int(size[0]), int(size[1])
    g = generator
    u_area = uniform(n * attempts, g).view(n, attempts)
    u_aspect = uniform(n * attempts, g).view(n, attempts)
    cw, ch = box_size(h * w, u_area, u_aspect, scale, ratio)
    ok = fits(cw, ch, h, w)
    first = ok.float().argmax(dim=1, keepdim=True)
    found = ok.any(dim=1)
    fw, fh = central_box(h, w, ratio)
    bw = torch.where(found, cw.gather(1, first).squeeze(1), torch.full_like(cw[:, 0], fw))
    bh = torch.where(found, ch.gather(1, first).squeeze(1), torch.full_like(cw[:, 0], fh))
    top = torch.where(found, torch.floor(uniform(n, g) * (h - bh + 1)), torch.floor((h - bh) / 2))
    left = torch.where(found, torch.floor(uniform(n, g) * (w - bw + 1)), torch.floor((w - bw) / 2))
    return torch.stack([top, left, bh, bw], 1)


def sample_box(height: int, width: int, scale: tuple[float, float], generator: torch.Generator,
               ratio: tuple[float, float] = RATIO) -> tuple[int, int, int, int]:
    """One box (top, left, height, width) in torchvision's draw order on a CPU ``generator``: per try an (area,
    aspect) pair, at the first fit its top and left; the geometry in float64."""
    for _ in range(ATTEMPTS):
        u = torch.rand(2, generator=generator).double()
        bw, bh = (int(v) for v in box_size(height * width, u[0], u[1], scale, ratio))
        if fits(bw, bh, height, width):
            top = int(torch.randint(0, height - bh + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - bw + 1, (1,), generator=generator))
            return top, left, bh, bw
    bw, bh = central_box(height, width, ratio)
    return (height - bh) // 2, (width - bw) // 2, bh, bw


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each image to its box (top, left, height, width) and resize it back to the input size: bilinear,
    half-pixel centres, edge clamping (torchvision ``resized_crop`` without antialias); ``flip`` [N] bool mirrors."""
    _, _, h, w = x.shape
    top, left, bh, bw = boxes.to(x.dtype).unbind(1)
    sx = bw / w
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, (2 * left + bw) / w - 1], 1),
                         torch.stack([zero, bh / h, (2 * top + bh) / h - 1], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # clamp sample points to the box's outer pixel centres: the crop's edges replicate, as when resizing the crop
    lo = torch.stack([(2 * left + 1) / w - 1, (2 * top + 1) / h - 1], 1).view(-1, 1, 1, 2)
    hi = torch.stack([(2 * (left + bw) - 1) / w - 1, (2 * (top + bh) - 1) / h - 1], 1).view(-1, 1, 1, 2)
    grid = torch.maximum(torch.minimum(grid, hi), lo)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop(x: torch.Tensor, generator: torch.Generator,
                        scale: tuple[float, float] = SOFT_LABEL_SCALE, ratio: tuple[float, float] = RATIO,
                        flip: bool = True) -> torch.Tensor:
    """Per-sample RandomResizedCrop back to the input size, then a horizontal flip with p 0.5 if ``flip``."""
    n = x.shape[0]
    boxes = sample_crop_boxes(n, x.shape[-2:], generator, scale, ratio)
    flips = uniform(n, generator) < 0.5 if flip else None
    return resized_crop(x, boxes, flips)
