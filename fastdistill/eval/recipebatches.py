"""The pixel-space batches of the named protocols that go beyond DSA or the drawn crop/flip/CutMix
(:attr:`~fastdistill.eval.protocols.Protocol.pixel_pipeline`: ``delt``, ``rded``, ``minimax``).

Per batch, in the references' order: RandAugment on the uint8 images (DELT, before ``ToTensor``) → RandomResizedCrop
and flip → ShufflePatches (RDED) → ColorJitter and PCA lighting (Minimax/IDC, on [0, 1] pixels) → normalization →
CutMix. All draws come from the student's generator, in that order, after the epoch's permutation. Hard labels are
mixed by the pasted area (λ = 1 − box area / image area, as IDC/Minimax); soft labels are the teacher's logits on the
final batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fastdistill.augment.color_jitter import color_jitter
from fastdistill.augment.crop import resized_crop, sample_crop_boxes
from fastdistill.augment.cutmix import CutMixParams, apply_cutmix, sample_cutmix
from fastdistill.augment.draws import uniform
from fastdistill.augment.lighting import lighting
from fastdistill.augment.randaugment import rand_augment
from fastdistill.augment.shuffle_patches import shuffle_patches
from fastdistill.data.base import DatasetInfo, to_float, to_uint8
from fastdistill.eval.protocols import Protocol


def recipe_batch(x: torch.Tensor, protocol: Protocol, info: DatasetInfo, generator: torch.Generator
                 ) -> tuple[torch.Tensor, CutMixParams | None]:
    """Model inputs ``x`` [B, C, H, W] (normalized) -> the augmented, normalized batch and its CutMix (or None)."""
    g, n, size = generator, x.shape[0], x.shape[-2:]
    pixels = info.denormalize(x)
    if protocol.randaugment is not None:
        magnitude, ops = protocol.randaugment
        fill = [round(255 * m) for m in info.mean]  # timm fills with the (ImageNet) mean
        pixels = to_float(rand_augment(to_uint8(pixels), g, magnitude, ops, fill))
    boxes = sample_crop_boxes(n, size, g, protocol.rrc_scale)
    flips = uniform(n, g) < 0.5 if protocol.flip else None
    pixels = resized_crop(pixels, boxes, flips)
    if protocol.shuffle_patches > 1:
        pixels = shuffle_patches(pixels, protocol.shuffle_patches, g)
    if protocol.color_jitter > 0:
        pixels = color_jitter(pixels, protocol.color_jitter, g)
    if protocol.lighting > 0:
        pixels = lighting(pixels, protocol.lighting, g)
    out = info.normalize(pixels)
    mix = sample_cutmix(n, size, g) if protocol.cutmix else None
    return (out, None) if mix is None else (apply_cutmix(out, mix), mix)


def mixed_targets(labels: torch.Tensor, mix: CutMixParams | None, num_classes: int, size: tuple[int, int]
                  ) -> torch.Tensor:
    """Hard labels after CutMix: the labels themselves without a mix, else λ·onehot(y) + (1 − λ)·onehot(y[perm])
    with λ the share of the image left unpasted (cross-entropy on it = λ·CE(y) + (1 − λ)·CE(y[perm]))."""
    if mix is None:
        return labels
    top, bottom, left, right = (int(v) for v in mix.box.tolist())
    lam = 1.0 - (bottom - top) * (right - left) / (size[0] * size[1])
    own = F.one_hot(labels, num_classes).float()
    other = F.one_hot(labels[mix.perm.to(labels.device)], num_classes).float()
    return lam * own + (1 - lam) * other


def recipe_epoch(x: torch.Tensor, y: torch.Tensor | None, batches: int, protocol: Protocol, info: DatasetInfo,
                 generator: torch.Generator, teacher: nn.Module | None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch: a permutation of the set split into ``batches`` balanced batches, each augmented by
    :func:`recipe_batch`, with its targets (hard: labels, mixed under CutMix; soft: ``teacher``'s logits)."""
    order = torch.randperm(x.shape[0], generator=generator, device=generator.device).to(x.device)
    for idx in torch.tensor_split(order, batches):
        xb, mix = recipe_batch(x[idx], protocol, info, generator)
        if protocol.kind == "hard":
            yield xb, mixed_targets(y[idx], mix, info.num_classes, tuple(x.shape[-2:]))
        else:
            with torch.no_grad():
                logits = teacher(xb)
            yield xb, logits  # outside no_grad: the student trains on it


