"""The layouts of an image-folder root, found automatically and indexed (file names and labels, nothing decoded).

- ImageFolder (ImageNet, ImageNette, ImageWoof, any other): ``train/<class>/...`` and ``val/<class>/...``, images at
  any depth below their class folder (``.JPEG`` included: extensions are matched case-insensitively);
- Tiny-ImageNet: ``train/<wnid>/images/*.JPEG`` (an ImageFolder train split) and ``val/images/*`` labelled by
  ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>...``).

Classes are the sorted folder names of ``train/``. Anything else stops with one line that says what is missing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fastdistill.errors import FastDistillError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
ANNOTATIONS = "val_annotations.txt"
LAYOUT_HELP = ("an imagefolder root holds train/ and val/ class folders (ImageNet, ImageNette, ImageWoof) or "
               f"Tiny-ImageNet's train/<wnid>/images/ with val/images/ and val/{ANNOTATIONS}")


@dataclass(frozen=True)
class FolderIndex:
    """One split: its folder, the image paths relative to it (bytes, one row each), labels and a fingerprint of the
    names, labels, sizes and modification times (not the bytes)."""

    root: Path
    files: np.ndarray
    labels: np.ndarray
    fingerprint: str

    def path(self, i: int) -> Path:
        return self.root / os.fsdecode(self.files[i])


@dataclass(frozen=True)
class FolderLayout:
    """An indexed root: ``kind`` is ``imagefolder`` or ``tiny-imagenet``."""

    kind: str
    classes: tuple[str, ...]
    train: FolderIndex
    val: FolderIndex

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.train.fingerprint}\n{self.val.fingerprint}".encode()).hexdigest()


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in EXTENSIONS


def _images_below(folder: Path, prefix: str = "") -> list[tuple[str, int, int]]:
    """``(path relative to folder's parent, size, mtime_ns)`` of every image at any depth below ``folder``, sorted."""
    found = []
    with os.scandir(folder) as entries:
        for e in entries:
            rel = f"{prefix}{e.name}"
            if e.is_dir():
                found.extend(_images_below(Path(e.path), rel + "/"))
            elif _is_image(e.name) and e.is_file():
                st = e.stat()
                found.append((rel, st.st_size, st.st_mtime_ns))
    return sorted(found)


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir())


class _Indexer:
    """Accumulates (file, label) rows class by class, hashing each row as it goes (memory: the rows only)."""

    def __init__(self, root: Path):
        self.root, self.digest, self.parts, self.labels = root, hashlib.sha256(), [], []

    def add(self, rows: list[tuple[str, int, int]], label: int, name: str) -> None:
        for rel, size, mtime in rows:
            self.digest.update(f"{name}\0{rel}\0{size}\0{mtime}\n".encode())
        if rows:
            self.parts.append(np.array([os.fsencode(rel) for rel, _, _ in rows]))
            self.labels.append(np.full(len(rows), label, dtype=np.int64))

    def done(self) -> FolderIndex:
        files = np.concatenate(self.parts) if self.parts else np.array([], dtype="S1")
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, dtype=np.int64)
        return FolderIndex(self.root, files, labels, self.digest.hexdigest())


def _class_folders(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise FastDistillError(f"{split_dir} is not a folder; {LAYOUT_HELP}")
    classes = _subfolders(split_dir)
    if not classes:
        loose = sum(1 for f in os.listdir(split_dir) if _is_image(f))
        what = f"holds {loose} images but no class folders" if loose else "has no class folders"
        raise FastDistillError(f"{split_dir} {what}; put each class's images in {split_dir}/<class>/ ({LAYOUT_HELP})")
    return classes


def _index_class_folders(split_dir: Path, classes: list[str], desc: str) -> FolderIndex:
    indexer, empty = _Indexer(split_dir), []
    for label, name in enumerate(tqdm(classes, desc=desc, leave=False, disable=len(classes) < 50)):
        rows = _images_below(split_dir / name, name + "/")
        if not rows:
            empty.append(name)
        indexer.add(rows, label, name)
    if len(empty) == len(classes):
        raise FastDistillError(f"no images ({', '.join(sorted(EXTENSIONS))}) found under {split_dir}")
    if empty:
        more = f" (nor do {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise FastDistillError(f"class folder {split_dir / empty[0]} holds no images{more}; add images or remove the "
                               "folder")
    return indexer.done()


def _index_tiny_val(val_dir: Path, classes: tuple[str, ...]) -> FolderIndex:
    """Tiny-ImageNet's ``val/images`` labelled by ``val/val_annotations.txt``, in (class, file) order."""
    notes = val_dir / ANNOTATIONS
    label_of = {c: i for i, c in enumerate(classes)}
    per_class: dict[int, list[str]] = {}
    try:
        lines = notes.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FastDistillError(f"cannot read {notes} ({type(exc).__name__}); restore the file") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise FastDistillError(f"{notes} line {number} is not '<file>\\t<wnid>...'; restore the file")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in label_of:
            raise FastDistillError(f"{notes} line {number} labels {name} with {wnid}, which has no train/ folder; "
                                   "use the matching train/ and val/")
        per_class.setdefault(label_of[wnid], []).append(name)
    images = val_dir / "images"
    listed = {name for names in per_class.values() for name in names}
    present = {name for name in os.listdir(images) if _is_image(name)}
    if missing := sorted(listed - present):
        raise FastDistillError(f"{notes} lists {images / missing[0]}, which does not exist"
                               f"{f' (nor do {len(missing) - 1} more)' if len(missing) > 1 else ''}; restore the "
                               "files")
    if extra := sorted(present - listed):
        raise FastDistillError(f"{images / extra[0]} has no line in {notes}"
                               f"{f' (nor do {len(extra) - 1} more)' if len(extra) > 1 else ''}; add its label or "
                               "remove it")
    indexer = _Indexer(val_dir)
    for label in sorted(per_class):
        rows = []
        for name in sorted(per_class[label]):
            st = (images / name).stat()
            rows.append((f"images/{name}", st.st_size, st.st_mtime_ns))
        indexer.add(rows, label, classes[label])
    return indexer.done()


def _difference(train: list[str], val: list[str], shown: int = 5) -> str:
    """Which class folders only one split has, e.g. ``only in train/: cat; only in val/: dog``."""
    parts = []
    for split, mine, other in (("train", train, val), ("val", val, train)):
        only = sorted(set(mine) - set(other))
        if only:
            more = f" and {len(only) - shown} more" if len(only) > shown else ""
            parts.append(f"only in {split}/: {', '.join(only[:shown])}{more}")
    return "; ".join(parts)


def index_root(base: Path) -> FolderLayout:
    """Find ``base``'s layout and index both splits."""
    train_dir, val_dir = base / "train", base / "val"
    if not train_dir.is_dir() or not val_dir.is_dir():
        missing = " and ".join(f"{d.name}/" for d in (train_dir, val_dir) if not d.is_dir())
        raise FastDistillError(f"{base} has no {missing} folder; {LAYOUT_HELP}")
    classes = _class_folders(train_dir)
    train = _index_class_folders(train_dir, classes, "indexing train/")
    if (val_dir / ANNOTATIONS).is_file() and (val_dir / "images").is_dir():
        return FolderLayout("tiny-imagenet", tuple(classes), train, _index_tiny_val(val_dir, tuple(classes)))
    val_classes = _class_folders(val_dir)
    if val_classes == ["images"] and "images" not in classes:
        raise FastDistillError(f"{val_dir / 'images'} has no {ANNOTATIONS} next to it; Tiny-ImageNet's val/ needs "
                               f"{val_dir / ANNOTATIONS}")
    if val_classes != classes:
        raise FastDistillError(f"train/ and val/ class folders differ ({_difference(classes, val_classes)}); "
                               "make them the same set")
    return FolderLayout("imagefolder", tuple(classes), train, _index_class_folders(val_dir, classes, "indexing val/"))
