"""Recover-time augmentation: one random resized crop box and one flip per group per iteration, plus jitter.

``fast`` mode crops every group of a launch with its own box in one ``grid_sample`` call (bilinear, border padding);
``compat`` mode applies torchvision's RandomResizedCrop + RandomHorizontalFlip to the whole (single-group) batch,
exactly as the reference does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision import transforms

RATIO = (3 / 4, 4 / 3)


def sample_box(height: int, width: int, scale: tuple[float, float], generator: torch.Generator) -> tuple[int, ...]:
    """torchvision's RandomResizedCrop box sampling (10 tries, then a centre crop), drawn from ``generator``."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        u = torch.rand(2, generator=generator).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            j = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        w, h = width, round(width / RATIO[0])
    elif in_ratio > RATIO[1]:
        h, w = height, round(height * RATIO[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_flip_groups(x: torch.Tensor, groups: int, boxes: list[tuple[int, ...]], flips: list[bool]) -> torch.Tensor:
    """Resize box ``boxes[g]`` of every image of group ``g`` back to full size (flipped where ``flips[g]``)."""
    n, _, height, width = x.shape
    per = n // groups
    theta = torch.zeros(groups, 2, 3, dtype=x.dtype, device=x.device)
    for g, ((i, j, h, w), flip) in enumerate(zip(boxes, flips, strict=True)):
        # output pixel centre o maps to crop coordinate j + (o + 0.5) * w / W - 0.5 (as bilinear interpolate does)
        sx, sy = w / width, h / height
        cx = (2 * j + w) / width - 1
        cy = (2 * i + h) / height - 1
        theta[g, 0, 0] = -sx if flip else sx
        theta[g, 0, 2] = cx
        theta[g, 1, 1] = sy
        theta[g, 1, 2] = cy
    grid = F.affine_grid(theta, [groups, 1, height, width], align_corners=False)
    grid = grid.repeat_interleave(per, dim=0)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def reference_crop_flip(x: torch.Tensor, image_size: int, min_scale: float, flip: bool = True) -> torch.Tensor:
    """The reference's augmentation: torchvision RRC(scale=(min_scale, 1)) + flip on the 4-D batch (global RNG)."""
    steps = [transforms.RandomResizedCrop(image_size, scale=(min_scale, 1.0), antialias=True)]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    return transforms.Compose(steps)(x)


def jitter_groups(x: torch.Tensor, groups: int, shifts: list[tuple[int, int]]) -> torch.Tensor:
    """Roll each group's images by its own (dy, dx) shift (no-op when every shift is zero)."""
    if all(s == (0, 0) for s in shifts):
        return x
    parts = x.chunk(groups)
    return torch.cat([torch.roll(p, shifts=s, dims=(2, 3)) for p, s in zip(parts, shifts, strict=True)])
