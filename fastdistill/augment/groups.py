"""DELT's recover-time augmentation of groups: one random resized crop box and one flip per group, plus jitter.

``fast`` mode crops every group of a launch with its own box (:func:`fastdistill.augment.crop.sample_box`) in one
``grid_sample`` call (bilinear, border padding of the whole image); ``compat`` mode applies torchvision's
RandomResizedCrop + RandomHorizontalFlip to the whole (single-group) batch, exactly as the reference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision import transforms

from fastdistill.augment.crop import sample_box

FLIP_P = 0.5  # the reference's RandomHorizontalFlip probability


def random_crop_flip_groups(x: torch.Tensor, min_scale: float, flip: bool,
                            generators: list[torch.Generator]) -> torch.Tensor:
    """Draw one box (RandomResizedCrop, scale (``min_scale``, 1)), then one flip (p :data:`FLIP_P` where ``flip``)
    per group from that group's CPU generator (``len(generators)`` groups), and apply them with
    :func:`crop_flip_groups`."""
    height, width = x.shape[-2:]
    boxes, flips = [], []
    for g in generators:
        boxes.append(sample_box(height, width, (min_scale, 1.0), g))
        flips.append(bool(torch.rand(1, generator=g) < (FLIP_P if flip else 0.0)))
    return crop_flip_groups(x, len(generators), boxes, flips)


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
