"""A teacher whose classes are not the dataset's: a 1000-class ImageNet teacher restricted to a subset's logits.

On a dataset whose class folders are ImageNet-1K WordNet ids (ImageNette, ImageWoof, ImageIDC, ImageNet-100, any
subset), a 1000-class teacher's logits are cut down to those classes, in the dataset's class order
(:class:`SubsetLogits`). DELT's selection, recover (its cross-entropy) and the soft-label evaluation all read the
restricted logits: the teacher then predicts only among the dataset's classes, as a teacher trained on it would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fastdistill.data.base import DatasetInfo
from fastdistill.data.imagenet_classes import IMAGENET1K_CLASSES, imagenet_classes, not_imagenet
from fastdistill.errors import FastDistillError


class SubsetLogits(nn.Module):
    """``model``'s logits at ``indices`` (class ``i`` of the dataset = output ``indices[i]`` of the model)."""

    def __init__(self, model: nn.Module, indices: Sequence[int]):
        super().__init__()
        self.model = model
        self.register_buffer("indices", torch.tensor(list(indices), dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).index_select(-1, self.indices)


def fit_classes(model: nn.Module, outputs: int, info: DatasetInfo, teacher: str) -> tuple[nn.Module, str | None]:
    """``model`` (``outputs`` logits) made to predict ``info``'s classes, and what was done (for logs/config.json).

    Same count: kept as it is (a 1000-class teacher on data named by ImageNet-1K WordNet ids is reordered if the
    data's order differs). A 1000-class teacher on a subset of ImageNet-1K: :class:`SubsetLogits`. Otherwise a
    one-line error.
    """
    n = info.num_classes
    if outputs != IMAGENET1K_CLASSES:
        if outputs != n:
            raise FastDistillError(f"teacher {teacher} predicts {outputs} classes but {info.name} has {n}; use a "
                                   "teacher trained on this dataset")
        return model, None
    found = imagenet_classes(info.classes)
    if found is None:
        unknown = not_imagenet(info.classes)
        if outputs == n and len(unknown) == n:  # no WordNet names at all: taken to be in ImageNet-1K's index order
            return model, None
        shown = ", ".join(unknown[:3]) + (f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else "")
        what = f"but {info.name} has {n}, and" if outputs != n else f"and {info.name} mixes names:"
        raise FastDistillError(f"teacher {teacher} predicts {outputs} classes {what} its class folders {shown} are "
                               "not ImageNet-1K WordNet ids; name every class folder by its WordNet id "
                               "(fastdistill/data/classes/imagenet1k_wnids.txt) to restrict the teacher to those "
                               "classes, or use a teacher trained on this data")
    if found.is_identity:
        return model, "ImageNet-1K: the teacher's 1000 classes in their own order"
    note = (f"{found.name}: the teacher's {outputs} ImageNet-1K logits restricted to the data's {n} classes, in the "
            "data's class order")
    print(f"teacher {teacher}: {note}")
    return SubsetLogits(model, found.indices), note
