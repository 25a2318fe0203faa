"""One entry point for every dataset: ``load_dataset(name, ...)``."""

from __future__ import annotations

from collections.abc import Callable

from fastdistill.data.base import Dataset
from fastdistill.data.digits import load_digits_dataset
from fastdistill.data.fashion_mnist import load_fashion_mnist
from fastdistill.data.imagefolder import load_imagefolder
from fastdistill.data.torchvision_sets import load_torchvision
from fastdistill.errors import FastDistillError

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": lambda root, download, image_size: load_digits_dataset(),
    "fashion-mnist": lambda root, download, image_size: load_fashion_mnist(root),
    "mnist": lambda root, download, image_size: load_torchvision("mnist", root, download),
    "cifar10": lambda root, download, image_size: load_torchvision("cifar10", root, download),
    "cifar100": lambda root, download, image_size: load_torchvision("cifar100", root, download),
    "imagefolder": lambda root, download, image_size: load_imagefolder(root, image_size),
}


def load_dataset(name: str, root: str | None = None, download: bool = False, image_size: int | None = None) -> Dataset:
    """Train and test splits (uint8 tensors in memory) plus metadata for ``name``."""
    if name not in DATASETS:
        raise FastDistillError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name](root, download, image_size)
