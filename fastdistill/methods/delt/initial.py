"""DELT's initial images and the teacher input that scores them for selection.

``fast`` mode uses the dataset's own pixels and normalization; ``compat`` mode reproduces the reference's view:
Resize(s // 7 * 8) -> CenterCrop(s), and ImageNet statistics when scoring (the reference normalizes every dataset so).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fastdistill.data.base import Dataset, to_float
from fastdistill.data.stats import IMAGENET_MEAN, IMAGENET_STD


def reference_view(images_u8: torch.Tensor, size: int) -> torch.Tensor:
    """The reference's Resize(s // 7 * 8) -> CenterCrop(s) view of uint8 images, as pixels in [0, 1]."""
    from torchvision.transforms.v2 import functional as TF

    resized = TF.resize(to_float(images_u8), [size // 7 * 8], antialias=True)
    return TF.center_crop(resized, [size, size])


def selection_input(ds: Dataset, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Map a uint8 batch to the teacher input used to score it (compat: the reference's ImageNet-stat view)."""
    if mode == "compat":
        c = ds.info.channels
        mean = torch.tensor(IMAGENET_MEAN[:c]).view(1, c, 1, 1)
        std = torch.tensor(IMAGENET_STD[:c]).view(1, c, 1, 1)
        return lambda u8: (reference_view(u8, ds.info.image_size) - mean.to(u8.device)) / std.to(u8.device)
    return lambda u8: ds.info.normalize(to_float(u8))


def initial_images(ds: Dataset, indices: torch.Tensor, mode: str) -> torch.Tensor:
    """Normalized initial images (compat: through the reference's resize + centre crop)."""
    u8 = ds.train.images[indices]
    pixels = reference_view(u8, ds.info.image_size) if mode == "compat" else to_float(u8)
    return ds.info.normalize(pixels.clamp(0, 1))
