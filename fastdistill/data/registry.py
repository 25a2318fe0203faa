"""One entry point for every dataset: ``load_dataset(name, ...)``."""

from __future__ import annotations

from fastdistill.data.access import DataAccess
from fastdistill.data.base import Dataset
from fastdistill.data.specs import dataset_spec


def load_dataset(name: str, root: str | None = None, download: bool = False, image_size: int | None = None, *,
                 workers: int | None = None, cache_dir: str | None = None, skip_corrupt: bool = False) -> Dataset:
    """Train and test splits plus metadata for the registered dataset ``name``.

    Small built-in datasets are uint8 tensors in memory; image folders are streamed (indexed now, decoded by
    ``workers`` DataLoader processes, optionally cached under ``cache_dir``; ``skip_corrupt``: see ``folder_split``).
    """
    spec = dataset_spec(name)
    return spec.loader(spec, root, download, image_size, DataAccess(workers, cache_dir, skip_corrupt))
