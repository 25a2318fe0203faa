"""One entry point for every dataset: ``load_dataset(name, ...)``."""

from __future__ import annotations

from fastdistill.data.base import Dataset
from fastdistill.data.specs import dataset_spec


def load_dataset(name: str, root: str | None = None, download: bool = False, image_size: int | None = None) -> Dataset:
    """Train and test splits (uint8 tensors in memory) plus metadata for the registered dataset ``name``."""
    spec = dataset_spec(name)
    return spec.loader(spec, root, download, image_size)
