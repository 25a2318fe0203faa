"""Real training images kept on the device, normalized and sorted by class, for per-class batches."""

from __future__ import annotations

import torch

from fastdistill.data.base import DatasetInfo, Split, to_float
from fastdistill.errors import FastDistillError


class RealData:
    """``x`` float [N, C, H, W] (normalized), ``y`` int64 [N], grouped by class; ``offsets[c]`` starts class ``c``."""

    def __init__(self, split: Split, info: DatasetInfo, device: torch.device | str):
        order = torch.argsort(split.labels, stable=True)
        self.info = info
        self.x = info.normalize(to_float(split.images[order].to(device)))
        self.y = split.labels[order].to(device)
        self.counts = split.counts(info.num_classes).tolist()
        self.offsets = [sum(self.counts[:c]) for c in range(info.num_classes)]
        if min(self.counts) == 0:
            empty = [info.classes[c] for c, n in enumerate(self.counts) if n == 0]
            raise FastDistillError(f"class(es) {', '.join(empty)} have no training images; every class needs some")

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    def _indices(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` distinct random indices per class: [C, n]."""
        dev = generator.device
        rows = [self.offsets[c] + torch.randperm(self.counts[c], generator=generator, device=dev)[:n]
                for c in range(self.num_classes)]
        return torch.stack(rows).to(self.x.device)

    def per_class(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """A random batch of ``min(n, smallest class)`` images of every class, class-major: [C, n, ...]."""
        n = min(n, min(self.counts))
        return self.x[self._indices(n, generator)]

    def init_images(self, k: int, generator: torch.Generator) -> torch.Tensor:
        """``k`` distinct random real images per class, [C, k, ...] (the ``real`` initialisation)."""
        if k > min(self.counts):
            c = min(range(self.num_classes), key=lambda i: self.counts[i])
            raise FastDistillError(f"{k} images per class were asked for but class {self.info.classes[c]!r} has "
                                   f"only {self.counts[c]} training images; lower --ipc")
        return self.x[self._indices(k, generator)]
