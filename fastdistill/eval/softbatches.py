"""The soft-label protocol's batches as data: what one epoch draws (order and augmentation) and the teacher's logits.

Live training, ``relabel`` and training from stored labels all go through these functions: :func:`draw_soft_epoch`
draws an epoch (a permutation split into balanced batches, then per batch its crop/flip/CutMix parameters, in the
generator order of live training), :func:`label_batches` applies each batch's parameters and fills in the teacher's
logits where none are stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from fastdistill.augment.cropmix import CropMix, apply_crop_mix, sample_crop_mix
from fastdistill.eval.protocols import Protocol


@dataclass
class SoftBatch:
    """One batch: ``index`` [B] rows of the training set, ``aug`` its draws, ``logits`` [B, K] the teacher's on the
    augmented batch (None until :func:`label_batches` asks the teacher)."""

    index: torch.Tensor
    aug: CropMix
    logits: torch.Tensor | None = None


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch: balanced splits of ``n`` into at most ``batch_size`` each (no batch of one)."""
    return math.ceil(n / min(batch_size, n))


def draw_soft_epoch(n: int, size: tuple[int, int], protocol: Protocol, generator: torch.Generator) -> list[SoftBatch]:
    """One epoch of draws on ``generator`` for a set of ``n`` images of ``size`` (H, W)."""
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return [SoftBatch(idx, sample_crop_mix(len(idx), size, generator, protocol.rrc_scale, protocol.flip,
                                           protocol.cutmix))
            for idx in torch.tensor_split(perm, num_batches(n, protocol.batch_size))]


def label_batches(x: torch.Tensor, batches: Iterable[SoftBatch], teacher: nn.Module | None
                  ) -> Iterator[tuple[torch.Tensor, SoftBatch]]:
    """Each batch's augmented inputs (from the model inputs ``x``) and the batch, its logits filled in by
    ``teacher`` (no grad) when not stored."""
    for batch in batches:
        xb = apply_crop_mix(x[batch.index.to(x.device)], batch.aug)
        if batch.logits is None:
            with torch.no_grad():
                batch.logits = teacher(xb)
        yield xb, batch
