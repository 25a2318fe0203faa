"""In-memory datasets: uint8 image tensors plus the metadata every pipeline needs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

SKIPPED = -1  # the label of an unreadable image skipped with --skip-corrupt (streamed splits): in no class


@dataclass(frozen=True)
class DatasetInfo:
    """Class names, geometry and the normalization the models see."""

    name: str
    classes: tuple[str, ...]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> model input."""
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> pixels (not clamped)."""
        mean, std = self._stats(x)
        return x * std + mean

    def bounds(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel [lo, hi] in normalized space that correspond to pixels in [0, 1]."""
        mean = torch.tensor(self.mean, device=device)
        std = torch.tensor(self.std, device=device)
        return -mean / std, (1 - mean) / std

    def to_dict(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "channels": self.channels,
                "image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}


@dataclass
class Split:
    """Images as uint8 [N, C, H, W] and labels as int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N,C,H,W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be [N] and match images")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def class_indices(self, c: int) -> torch.Tensor:
        return (self.labels == c).nonzero().flatten()

    def counts(self, num_classes: int) -> torch.Tensor:
        """Images per class (a skipped image, label :data:`SKIPPED`, counts in none)."""
        return torch.bincount(self.labels[self.labels >= 0], minlength=num_classes)

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 images at ``indices`` (in that order): [len(indices), C, H, W]."""
        return self.images[indices]

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(offset, uint8 images, labels)`` of consecutive batches of positions ``start:stop``, in order."""
        stop = len(self) if stop is None else stop
        for offset in range(start, stop, batch_size):
            end = min(offset + batch_size, stop)
            yield offset, self.images[offset:end], self.labels[offset:end]

    def decoded(self) -> Split:
        """A split with ``images`` addressable at random (this one: it is already in memory)."""
        return self


@dataclass
class Dataset:
    """A train/test pair living in memory; ``fingerprint`` tells two versions of a data root apart (imagefolder)."""

    info: DatasetInfo
    train: Split
    test: Split
    source: str = field(default="")
    fingerprint: str = field(default="")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def to_uint8(pixels: torch.Tensor, truncate: bool = False) -> torch.Tensor:
    """Pixels in [0, 1] -> uint8; ``truncate`` reproduces the reference ``(x*255).astype(uint8)``, else round."""
    scaled = pixels.detach().clamp(0, 1) * 255
    return (scaled.floor() if truncate else scaled.round()).to(torch.uint8)
