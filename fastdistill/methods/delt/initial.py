"""DELT's initial images and the teacher input that scores them for selection.

``fast`` mode uses the dataset's own pixels and normalization; ``compat`` mode reproduces the reference's view
(Resize(s // 7 * 8) -> CenterCrop(s)) and its normalization pairing (``normalization.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fastdistill.data.base import Dataset, DatasetInfo, to_float
from fastdistill.methods.delt.normalization import compat_recover_info


def reference_view(images_u8: torch.Tensor, size: int) -> torch.Tensor:
    """The reference's Resize(s // 7 * 8) -> CenterCrop(s) view of uint8 images, as pixels in [0, 1]."""
    from torchvision.transforms.v2 import functional as TF

    resized = TF.resize(to_float(images_u8), [size // 7 * 8], antialias=True)
    return TF.center_crop(resized, [size, size])


def selection_input(ds: Dataset, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Map a uint8 batch to the teacher input used to score it: the teacher's own normalization in both modes
    (compat: of the reference's resize + centre-crop view), as the reference's teacher sees matched statistics."""
    if mode == "compat":
        return lambda u8: ds.info.normalize(reference_view(u8, ds.info.image_size))
    return lambda u8: ds.info.normalize(to_float(u8))


def recover_info(ds: Dataset, mode: str) -> DatasetInfo:
    """The statistics recover works in: the teacher's (fast) or the reference recover's (compat; normalization.py)."""
    return compat_recover_info(ds.info) if mode == "compat" else ds.info


def initial_images(ds: Dataset, indices: torch.Tensor, mode: str) -> torch.Tensor:
    """Normalized initial images in ``recover_info``'s space (compat: through the reference's resize + centre crop)."""
    u8 = ds.train.take(indices)
    pixels = reference_view(u8, ds.info.image_size) if mode == "compat" else to_float(u8)
    return recover_info(ds, mode).normalize(pixels.clamp(0, 1))
