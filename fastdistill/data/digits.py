"""scikit-learn's bundled ``digits``: 1,797 8x8 grayscale images, 10 classes; the default, fully offline."""

from __future__ import annotations

import numpy as np
import torch

from fastdistill.data.base import Dataset, DatasetInfo, Split

# Per-pixel mean/std of the training split (digits pixels are 0..16, rescaled to [0, 1]).
_MEAN, _STD = (0.3053,), (0.3758,)


def load_digits_dataset() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [N,1,8,8]
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target, test_size=0.25, random_state=0,
                                              stratify=bunch.target)
    info = DatasetInfo("digits", tuple(str(i) for i in range(10)), 1, 8, _MEAN, _STD)
    return Dataset(info, Split(torch.from_numpy(x_tr), torch.from_numpy(y_tr)),
                   Split(torch.from_numpy(x_te), torch.from_numpy(y_te)), source="sklearn.datasets.load_digits")
