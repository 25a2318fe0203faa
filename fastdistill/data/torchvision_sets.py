"""MNIST, CIFAR-10 and CIFAR-100 through torchvision from a local root (``--download`` opts in to fetching)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from fastdistill.data.base import Dataset, Split
from fastdistill.errors import FastDistillError

if TYPE_CHECKING:
    from fastdistill.data.access import DataAccess
    from fastdistill.data.specs import DatasetSpec


def _split(ds) -> Split:
    data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
    images = data[:, None] if data.dim() == 3 else data.permute(0, 3, 1, 2)
    return Split(images.contiguous().to(torch.uint8), torch.as_tensor(ds.targets, dtype=torch.long))


def load_torchvision(cls_name: str, spec: DatasetSpec, root: str | None, download: bool,
                     image_size: int | None, access: DataAccess) -> Dataset:
    """``torchvision.datasets.<cls_name>`` under ``root``, in memory (``image_size`` and ``access`` do not apply)."""
    import torchvision

    name = spec.name
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
    info = spec.info(tuple(str(c) for c in train.classes))
    return Dataset(info, _split(train), _split(test), source=root)
