"""MNIST, CIFAR-10 and CIFAR-100 through torchvision from a local root (``--download`` opts in to fetching)."""

from __future__ import annotations

import numpy as np
import torch

from fastdistill.data.base import Dataset, DatasetInfo, Split
from fastdistill.errors import FastDistillError

_SPECS = {
    "mnist": ("MNIST", 1, 28, (0.1307,), (0.3081,)),
    "cifar10": ("CIFAR10", 3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ("CIFAR100", 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _split(ds) -> Split:
    data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
    images = data[:, None] if data.dim() == 3 else data.permute(0, 3, 1, 2)
    return Split(images.contiguous().to(torch.uint8), torch.as_tensor(ds.targets, dtype=torch.long))


def load_torchvision(name: str, root: str | None, download: bool) -> Dataset:
    import torchvision

    cls_name, channels, size, mean, std = _SPECS[name]
    if root is None:
        raise FastDistillError(f"{name} needs --data-root DIR (torchvision format); add --download to fetch it")
    cls = getattr(torchvision.datasets, cls_name)
    try:
        train, test = cls(root, train=True, download=download), cls(root, train=False, download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        hint = "check the folder" if download else "pass --download to fetch it"
        raise FastDistillError(f"{name} not found under {root} ({str(exc).splitlines()[0]}); {hint}") from exc
    except OSError as exc:  # download attempted without network
        raise FastDistillError(f"could not download {name} ({exc}); place the torchvision files under {root}") from exc
    info = DatasetInfo(name, tuple(str(c) for c in train.classes), channels, size, mean, std)
    return Dataset(info, _split(train), _split(test), source=root)
