"""An ImageFolder root with ``train/`` and ``val/`` class folders, decoded once into memory at ``image_size``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from fastdistill.data.base import Dataset, Split
from fastdistill.errors import FastDistillError
from fastdistill.utils.fingerprint import listing_sha256

if TYPE_CHECKING:
    from fastdistill.data.specs import DatasetSpec

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}


def list_folder(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted folder names) and (file, label) pairs, like torchvision's ImageFolder."""
    if not split_dir.is_dir():
        raise FastDistillError(f"{split_dir} is not a folder; an imagefolder root needs train/ and val/ class folders")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise FastDistillError(f"{split_dir} has no class folders; put each class's images in {split_dir}/<class>/")
    items = [(f, i) for i, c in enumerate(classes) for f in sorted((split_dir / c).rglob("*"))
             if f.suffix.lower() in EXTENSIONS]
    if not items:
        raise FastDistillError(f"no images ({', '.join(sorted(EXTENSIONS))}) found under {split_dir}")
    empty = sorted(set(classes) - {classes[label] for _, label in items})
    if empty:
        raise FastDistillError(f"class folder {split_dir / empty[0]} holds no images"
                               f"{f' (nor do {len(empty) - 1} more)' if len(empty) > 1 else ''}; add images or "
                               "remove the folder")
    return classes, items


def load_image(path: Path, size: int) -> np.ndarray:
    """Decode, convert to RGB, resize the shorter side to ``size`` and center-crop: uint8 [3, size, size]."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        msg = f"corrupt or unreadable image {path} ({type(exc).__name__}); remove or replace it"
        raise FastDistillError(msg) from exc


def _load_split(items: list[tuple[Path, int]], size: int, desc: str) -> Split:
    images = np.empty((len(items), 3, size, size), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for i, arr in enumerate(tqdm(pool.map(lambda it: load_image(it[0], size), items), total=len(items),
                                     desc=desc, leave=False)):
            images[i] = arr
    return Split(torch.from_numpy(images), torch.tensor([label for _, label in items]))


def load_imagefolder(spec: DatasetSpec, root: str | None, download: bool, image_size: int | None) -> Dataset:
    """Decode ``root``'s images at ``image_size`` (default: the spec's); ``download`` does not apply."""
    if root is None:
        raise FastDistillError("imagefolder needs --data-root DIR containing train/ and val/ class folders")
    base = Path(root)
    if not base.is_dir():
        raise FastDistillError(f"--data-root {root} does not exist")
    size = image_size or spec.image_size
    classes, train_items = list_folder(base / "train")
    val_classes, val_items = list_folder(base / "val")
    if val_classes != classes:
        raise FastDistillError(f"train/ and val/ class folders differ ({_difference(classes, val_classes)}); "
                               "make them the same set")
    info = spec.info(tuple(classes), size)
    fingerprint = listing_sha256(base, [f for f, _ in train_items + val_items])
    return Dataset(info, _load_split(train_items, size, "train images"), _load_split(val_items, size, "val images"),
                   source=str(base), fingerprint=fingerprint)


def _difference(train: list[str], val: list[str], shown: int = 5) -> str:
    """Which class folders only one split has, e.g. ``only in train/: cat; only in val/: dog``."""
    parts = []
    for split, mine, other in (("train", train, val), ("val", val, train)):
        only = sorted(set(mine) - set(other))
        if only:
            more = f" and {len(only) - shown} more" if len(only) > shown else ""
            parts.append(f"only in {split}/: {', '.join(only[:shown])}{more}")
    return "; ".join(parts)
