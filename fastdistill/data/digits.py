"""scikit-learn's bundled ``digits``: 1,797 8x8 grayscale images, 10 classes; the default, fully offline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from fastdistill.data.base import Dataset, Split

if TYPE_CHECKING:
    from fastdistill.data.access import DataAccess
    from fastdistill.data.specs import DatasetSpec


def load_digits_dataset(spec: DatasetSpec, root: str | None, download: bool, image_size: int | None,
                        access: DataAccess) -> Dataset:
    """Bundled with scikit-learn, in memory: ``root``, ``download``, ``image_size`` and ``access`` do not apply."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [N,1,8,8]
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target, test_size=0.25, random_state=0,
                                              stratify=bunch.target)
    info = spec.info(tuple(str(i) for i in range(10)))
    return Dataset(info, Split(torch.from_numpy(x_tr), torch.from_numpy(y_tr)),
                   Split(torch.from_numpy(x_te), torch.from_numpy(y_te)), source="sklearn.datasets.load_digits")
