"""Which mean/std DELT's teacher, selection and recover use in each mode.

The reference (VILA-Lab/DELT) pairs them like this: its teachers were trained on ImageNet statistics, and selection
(data_selection.py) and evaluation feed them ImageNet-normalized images, so the teacher sees what it was trained on;
recover (recover.py ``get_mean_std``) instead normalizes the initial images, clamps and denormalizes with the
dataset's statistics (CIFAR-10's for CIFAR-10 *and* CIFAR-100, Tiny-ImageNet's for Tiny) and feeds that tensor to the
teacher unchanged, which reads it as ImageNet-normalized: a per-channel contrast/offset shift during recover only.

fastdistill's teachers (``squeeze``) are trained on the dataset's own statistics. ``fast`` uses them everywhere.
``compat`` reproduces the reference's pairing: selection scores with the teacher's own normalization (matched, as in
the reference), and recover works in the reference's recover space (``compat_recover_info``) while the teacher is
wrapped (``ImageNetReadingTeacher``) so that it reads its input as ImageNet-normalized, exactly as the reference's
teacher does. Datasets the reference has no statistics for (digits, MNIST, Fashion-MNIST, image folders other than
Tiny) recover in their own statistics; single-channel data take ImageNet's first channel as the teacher's reading.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from fastdistill.data.base import DatasetInfo
from fastdistill.data.stats import IMAGENET_MEAN, IMAGENET_STD

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
TINY_IMAGENET_STATS = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))

# recover.py get_mean_std (L215-225): dataset name -> (mean, std) the reference recovers in.
REFERENCE_RECOVER_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": CIFAR10_STATS,
    "cifar100": CIFAR10_STATS,
    "tiny-imagenet": TINY_IMAGENET_STATS,
    "tinyimagenet": TINY_IMAGENET_STATS,
}


def compat_recover_info(info: DatasetInfo) -> DatasetInfo:
    """``info`` with the statistics the reference recovers in (initial images, pixel bounds, saved pixels)."""
    mean, std = REFERENCE_RECOVER_STATS.get(info.name, (info.mean, info.std))
    return dataclasses.replace(info, mean=tuple(mean), std=tuple(std))


class ImageNetReadingTeacher(nn.Module):
    """Wrap a teacher trained on ``info``'s statistics so it reads its input as ImageNet-normalized.

    input x -> teacher(info.normalize(x * std_imagenet + mean_imagenet)): what a teacher trained on ImageNet
    statistics sees of the same tensor. An identity when ``info`` uses ImageNet's statistics.
    """

    def __init__(self, teacher: nn.Module, info: DatasetInfo):
        super().__init__()
        c = info.channels
        mean_in, std_in = torch.tensor(IMAGENET_MEAN[:c]), torch.tensor(IMAGENET_STD[:c])
        mean, std = torch.tensor(info.mean), torch.tensor(info.std)
        self.register_buffer("scale", (std_in / std).view(1, c, 1, 1))
        self.register_buffer("shift", ((mean_in - mean) / std).view(1, c, 1, 1))
        self.teacher = teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x * self.scale.to(x.dtype) + self.shift.to(x.dtype))
