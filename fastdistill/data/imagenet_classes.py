"""ImageNet-1K's class order and the ImageNet subsets shipped with the package, matched against class folder names.

A 1000-class ImageNet teacher predicts the classes in the order of ``classes/imagenet1k_wnids.txt`` (sorted WordNet
ids). :func:`imagenet_classes` finds, for a dataset whose class folders are named by WordNet id, the ImageNet-1K index
of each of its classes and the name of the subset they form (ImageNette, ImageWoof, ImageIDC, ImageNet-100, the whole
of ImageNet-1K, or an unnamed subset). Sources of the lists: ``classes/README.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from fastdistill.errors import FastDistillError

IMAGENET1K_CLASSES = 1000
# file stem under classes/ -> display name
SUBSETS = {"imagenette": "ImageNette", "imagewoof": "ImageWoof", "imageidc": "ImageIDC",
           "imagenet100": "ImageNet-100"}


@functools.cache
def _wnid_file(stem: str) -> tuple[str, ...]:
    text = resources.files("fastdistill.data").joinpath("classes", f"{stem}_wnids.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def imagenet1k_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1K WordNet ids in the class-index order of ImageNet models."""
    return _wnid_file("imagenet1k")


def subset_wnids(name: str) -> tuple[str, ...]:
    """The WordNet ids of a shipped subset (a key of :data:`SUBSETS`), in its source's order."""
    if name not in SUBSETS:
        raise FastDistillError(f"unknown ImageNet subset {name!r}; use one of {', '.join(SUBSETS)}")
    return _wnid_file(name)


@dataclass(frozen=True)
class ImageNetClasses:
    """Where a dataset's classes sit in ImageNet-1K: ``indices[i]`` is the ImageNet-1K index of class ``i``."""

    indices: tuple[int, ...]
    name: str  # "ImageNet-1K", a SUBSETS display name, or "a 37-class subset of ImageNet-1K"

    @property
    def is_identity(self) -> bool:
        """All of ImageNet-1K in its own order: a 1000-class teacher's logits need no change."""
        return self.indices == tuple(range(IMAGENET1K_CLASSES))


def subset_name(classes: Sequence[str]) -> str:
    """The name of the ImageNet-1K subset whose class set equals ``classes`` (WordNet ids)."""
    chosen = set(classes)
    if len(chosen) == IMAGENET1K_CLASSES:
        return "ImageNet-1K"
    for stem, name in SUBSETS.items():
        if chosen == set(subset_wnids(stem)):
            return name
    return f"a {len(chosen)}-class subset of ImageNet-1K"


def not_imagenet(classes: Sequence[str]) -> list[str]:
    """The names in ``classes`` that are not ImageNet-1K WordNet ids."""
    known = set(imagenet1k_wnids())
    return [c for c in classes if c not in known]


def imagenet_classes(classes: Sequence[str]) -> ImageNetClasses | None:
    """ImageNet-1K indices of ``classes`` (folder names), or None unless every one is an ImageNet-1K WordNet id."""
    if not_imagenet(classes):
        return None
    index = {wnid: i for i, wnid in enumerate(imagenet1k_wnids())}
    return ImageNetClasses(tuple(index[c] for c in classes), subset_name(classes))
