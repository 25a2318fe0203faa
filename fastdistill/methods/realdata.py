"""Real training images for per-class batches: a uint8 source, converted to normalized float one drawn batch at a time.

The source is ``split.decoded().images`` (in memory for small sets, a memory map for a streamed split). On a GPU a
source of at most :data:`DEVICE_COPY_BYTES` is copied to the device once, as uint8 (a quarter of the float copy it
replaces), so batches are gathered there; a larger one stays on the host and each batch is gathered there and copied.
"""

from __future__ import annotations

import torch

from fastdistill.data.base import DatasetInfo, Split, to_float
from fastdistill.errors import FastDistillError

DEVICE_COPY_BYTES = 1 << 30


def batch_source(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Where to gather batches of uint8 ``images`` for ``device``: a copy on a GPU when they take at most
    :data:`DEVICE_COPY_BYTES`, else ``images`` itself (host memory or a memory map)."""
    device = torch.device(device)
    if device.type != "cpu" and images.numel() <= DEVICE_COPY_BYTES:
        return images.to(device)
    return images


def gather(source: torch.Tensor, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``source[rows]`` (any index shape) on ``device``."""
    return source[rows.to(source.device)].to(device)


class RealImages:
    """The normalized float images of a split in class-sorted order, ``[N, C, H, W]``, read lazily: ``x[idx]`` (a
    long tensor of positions, any shape) converts only those images, on ``device``."""

    def __init__(self, source: torch.Tensor, order: torch.Tensor, info: DatasetInfo, device: torch.device):
        self.source, self.info, self.device = source, info, device
        self.order = order.to(source.device)
        self.shape = torch.Size((order.numel(), *source.shape[1:]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.info.normalize(to_float(gather(self.source, self.order[idx.to(self.order.device)], self.device)))


class RealData:
    """``x``: the training images normalized and grouped by class (:class:`RealImages`, converted per batch); ``y``:
    int64 [N] labels on the device in the same order; ``offsets[c]`` starts class ``c``."""

    def __init__(self, split: Split, info: DatasetInfo, device: torch.device | str):
        device = torch.device(device)
        order = torch.argsort(split.labels, stable=True)
        self.info = info
        self.x = RealImages(batch_source(split.decoded().images, device), order, info, device)
        self.y = split.labels[order].to(device)
        self.counts = torch.bincount(split.labels, minlength=info.num_classes).tolist()
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
        return torch.stack(rows)

    def per_class(self, n: int, generator: torch.Generator, classes: range | None = None) -> torch.Tensor:
        """A random batch of ``min(n, smallest class)`` images of every class, class-major: [C, n, ...]. With
        ``classes`` (a range), the same draws, but only those classes' images are read: [len(classes), n, ...]."""
        n = min(n, min(self.counts))
        rows = self._indices(n, generator)
        return self.x[rows if classes is None else rows[classes.start:classes.stop]]

    def init_images(self, k: int, generator: torch.Generator) -> torch.Tensor:
        """``k`` distinct random real images per class, [C, k, ...] (the ``real`` initialisation)."""
        if k > min(self.counts):
            c = min(range(self.num_classes), key=lambda i: self.counts[i])
            raise FastDistillError(f"{k} images per class were asked for but class {self.info.classes[c]!r} has "
                                   f"only {self.counts[c]} training images; lower --ipc")
        return self.x[self._indices(k, generator)]
