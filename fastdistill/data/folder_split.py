"""A split read from image files: labels in memory, pixels decoded on demand or read from a decoded cache.

``batches`` decodes in ``torch.utils.data.DataLoader`` worker processes (``--workers``), in order; ``take`` decodes
its few images in threads; ``decoded()`` builds (once) or opens the memory-mapped uint8 cache of the whole split at
the run's resolution (``decoded_cache.py``). Once that cache exists, ``batches`` and ``take`` read from it too (with
plain file reads, so a pass does not map the whole file into this process).

Corrupt or unreadable files: by default the first one read stops the run with one line naming it. With
``skip_corrupt`` the split learns it instead: the file keeps its position, its label becomes :data:`SKIPPED` (-1) in
``labels`` and in the batch it came in, its pixels are zeros, and ``unreadable`` records it. Positions never shift,
so per-position results (scores, latents, chunk files) stay aligned; everything that chooses images by class
(``class_indices``, ``counts``, DELT's selection, random real subsets, k-means per class) never sees a skipped
file; code that uses every image of a pass or of ``decoded()`` must drop the rows labelled -1.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from fastdistill.data.access import DataAccess
from fastdistill.data.base import SKIPPED, Split
from fastdistill.data.decode import try_decode
from fastdistill.data.decoded_cache import CacheFile, build_cache, cache_files, open_cache
from fastdistill.data.layouts import FolderIndex
from fastdistill.errors import FastDistillError

LOAD_BYTES = 16 << 20  # pixels per DataLoader item batch: bounds what the workers hold in flight


class _Files(TorchDataset):
    """Position -> ``(uint8 [3, s, s] or None, error message or None)``."""

    def __init__(self, index: FolderIndex, size: int):
        self.index, self.size = index, size

    def __len__(self) -> int:
        return len(self.index.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, str | None]:
        return try_decode(self.index.path(i), self.size)


class _Pieces:
    """The DataLoader's item batches: ranges of at most ``piece`` positions, never across a ``batch_size`` boundary."""

    def __init__(self, start: int, stop: int, batch_size: int, piece: int):
        self.start, self.stop, self.batch_size, self.piece = start, stop, batch_size, piece

    def __iter__(self) -> Iterator[range]:
        for offset in range(self.start, self.stop, self.batch_size):
            end = min(offset + self.batch_size, self.stop)
            for a in range(offset, end, self.piece):
                yield range(a, min(a + self.piece, end))

    def __len__(self) -> int:
        full, rest = divmod(self.stop - self.start, self.batch_size)
        return full * -(-self.batch_size // self.piece) + -(-rest // self.piece)


def _collate(items: list[tuple[np.ndarray | None, str | None]], size: int) -> tuple[torch.Tensor, list]:
    """Stack decoded images (zeros for a bad file) and list ``(row, message)`` of the bad ones."""
    images = np.zeros((len(items), 3, size, size), dtype=np.uint8)
    errors = []
    for j, (arr, err) in enumerate(items):
        if arr is None:
            errors.append((j, err))
        else:
            images[j] = arr
    return torch.from_numpy(images), errors


class FolderSplit(Split):
    """One split of an image folder at ``image_size`` (see the module docstring)."""

    def __init__(self, index: FolderIndex, image_size: int, access: DataAccess, name: str):
        self.index, self.image_size, self.access, self.name = index, image_size, access, name
        self.labels = torch.from_numpy(index.labels.copy())
        self.unreadable: dict[int, str] = {}  # position -> one-line message (skip_corrupt only)
        self._cache: CacheFile | None = None
        self._looked_for_cache = False
        self._decoded: Split | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"FolderSplit({self.index.root}, {len(self)} images at {self.image_size}px)"

    @property
    def images(self) -> torch.Tensor:
        """All images, from the decoded cache (built on first use): prefer ``take``, ``batches`` or ``decoded()``."""
        return self.decoded().images

    @property
    def skipped(self) -> list[Path]:
        """The files skipped so far (``skip_corrupt``), in position order."""
        return [self.index.path(pos) for pos in sorted(self.unreadable)]

    @property
    def bytes_per_image(self) -> int:
        return 3 * self.image_size * self.image_size

    def _cached(self) -> CacheFile | None:
        """The decoded cache if it exists on disk (looked for once)."""
        if self._cache is None and not self._looked_for_cache:
            self._looked_for_cache = True
            data, header, shape = cache_files(self)
            self._use_cache(open_cache(data, header, shape))
        return self._cache

    def _use_cache(self, cache: CacheFile | None) -> None:
        if cache is None:
            return
        for pos, msg in cache.unreadable.items():
            self._unreadable(pos, msg)
        self._cache = cache

    def _unreadable(self, pos: int, message: str) -> None:
        if not self.access.skip_corrupt:
            raise FastDistillError(message)
        self.labels[pos] = SKIPPED
        self.unreadable[pos] = message

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 images at the integer positions ``indices`` (in that order): [len(indices), 3, s, s]."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        idx = torch.where(idx < 0, idx + len(self), idx)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"positions out of range for a split of {len(self)} images")
        if (cache := self._cached()) is not None:
            return cache.take(idx)
        positions = idx.tolist()
        threads = max(1, min(self.access.num_workers, len(positions)))
        with ThreadPoolExecutor(threads) as pool:
            decoded = list(pool.map(lambda i: try_decode(self.index.path(i), self.image_size), positions))
        out = np.zeros((len(positions), 3, self.image_size, self.image_size), dtype=np.uint8)
        for j, (pos, (arr, err)) in enumerate(zip(positions, decoded, strict=True)):
            if arr is None:
                self._unreadable(pos, err)
            else:
                out[j] = arr
        return torch.from_numpy(out)

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(offset, uint8 images, labels)`` of consecutive batches of positions ``start:stop``, in order."""
        stop = len(self) if stop is None else min(stop, len(self))
        if (cache := self._cached()) is not None:
            for offset in range(start, stop, batch_size):
                end = min(offset + batch_size, stop)
                yield offset, cache.rows(offset, end), self.labels[offset:end]
            return
        yield from self.decode_batches(batch_size, start, stop)

    def decode_batches(self, batch_size: int, start: int = 0, stop: int | None = None
                       ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Like ``batches``, always decoding the files (in DataLoader workers)."""
        stop = len(self) if stop is None else min(stop, len(self))
        if start >= stop:
            return
        piece = max(1, min(batch_size, LOAD_BYTES // self.bytes_per_image))
        pieces = _Pieces(start, stop, batch_size, piece)
        loader = DataLoader(_Files(self.index, self.image_size), batch_sampler=pieces,
                            num_workers=self.access.num_workers, collate_fn=partial(_collate, size=self.image_size))
        offset, parts, filled = start, [], 0
        for rows, (images, errors) in zip(pieces, loader, strict=True):
            for j, msg in errors:
                self._unreadable(rows[j], msg)
            parts.append(images)
            filled += len(rows)
            end = min(offset + batch_size, stop)
            if offset + filled == end:
                yield offset, parts[0] if len(parts) == 1 else torch.cat(parts), self.labels[offset:end]
                offset, parts, filled = end, [], 0

    def decoded(self) -> Split:
        """The split with ``images`` as the memory-mapped decoded cache (built once, with a progress bar)."""
        if self._decoded is None:
            if self._cached() is None:
                self._use_cache(build_cache(self, *cache_files(self)))
            self._decoded = Split(self._cache.mapped(), self.labels)
        return self._decoded
