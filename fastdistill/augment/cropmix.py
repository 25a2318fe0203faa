"""The soft-label protocol's batch augmentation as parameters: per-sample RandomResizedCrop boxes, flips and one
CutMix per batch. :func:`sample_crop_mix` draws them, :func:`apply_crop_mix` applies them; live training does both
at once, ``relabel`` stores the draws and training from stored labels applies the stored ones (one code path)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdistill.augment.crop import RATIO, SOFT_LABEL_SCALE, resized_crop, sample_crop_boxes
from fastdistill.augment.cutmix import CutMixParams, apply_cutmix, sample_cutmix
from fastdistill.augment.draws import uniform


@dataclass(frozen=True)
class CropMix:
    """One batch's draws: ``boxes`` [B, 4] (top, left, height, width, integer-valued), ``flips`` [B] bool or None,
    ``mix`` the batch's CutMix or None."""

    boxes: torch.Tensor
    flips: torch.Tensor | None
    mix: CutMixParams | None


def sample_crop_mix(n: int, size: tuple[int, int], generator: torch.Generator,
                    scale: tuple[float, float] = SOFT_LABEL_SCALE, flip: bool = True, cutmix: bool = True,
                    ratio: tuple[float, float] = RATIO) -> CropMix:
    """Draw, in this order, ``n`` crop boxes, ``n`` flips (p 0.5, if ``flip``) and one CutMix (if ``cutmix``)."""
    boxes = sample_crop_boxes(n, size, generator, scale, ratio)
    flips = uniform(n, generator) < 0.5 if flip else None
    return CropMix(boxes, flips, sample_cutmix(n, size, generator) if cutmix else None)


def apply_crop_mix(x: torch.Tensor, params: CropMix) -> torch.Tensor:
    """Crop each image to its box, resize it back, mirror it if flipped, then paste the CutMix box."""
    flips = None if params.flips is None else params.flips.to(x.device)
    x = resized_crop(x, params.boxes.to(x.device), flips)
    return x if params.mix is None else apply_cutmix(x, params.mix)
