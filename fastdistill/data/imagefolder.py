"""An image-folder root (``layouts.py``: ImageNet-style class folders or Tiny-ImageNet), indexed and streamed.

Nothing is decoded here: both splits are :class:`~fastdistill.data.folder_split.FolderSplit` (file list and labels
in memory; pixels decoded on demand at ``image_size``, or read from the decoded cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastdistill.data.access import DataAccess
from fastdistill.data.base import Dataset
from fastdistill.data.folder_split import FolderSplit
from fastdistill.data.layouts import index_root
from fastdistill.errors import FastDistillError

if TYPE_CHECKING:
    from fastdistill.data.specs import DatasetSpec


def load_imagefolder(spec: DatasetSpec, root: str | None, download: bool, image_size: int | None,
                     access: DataAccess) -> Dataset:
    """Index ``root`` for reading at ``image_size`` (default: the spec's); ``download`` does not apply."""
    if root is None:
        raise FastDistillError("imagefolder needs --data-root DIR containing train/ and val/ class folders")
    base = Path(root)
    if not base.is_dir():
        raise FastDistillError(f"--data-root {root} does not exist")
    size = image_size or spec.image_size
    layout = index_root(base)
    info = spec.info(layout.classes, size)
    return Dataset(info, FolderSplit(layout.train, size, access, "train"), FolderSplit(layout.val, size, access, "val"),
                   source=str(base), fingerprint=layout.fingerprint)
