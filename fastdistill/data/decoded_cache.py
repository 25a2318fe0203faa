"""The decoded uint8 cache of a streamed split: one raw file of [N, 3, s, s] pixels plus a JSON header.

The file name carries a sha256 of the split's fingerprint (file names, labels, sizes, modification times), the image
size and :data:`~fastdistill.data.decode.DECODE_SETTINGS`: a changed folder or other decode settings name another
file, so a stale cache is never read (it stays on disk until deleted). It is built once, in one pass with a progress
bar, into a temporary file that is renamed when complete; the header, written last, lists the positions that could
not be read (``--skip-corrupt``). Readers map it (``mapped``) or read rows with plain file reads.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from fastdistill.data.decode import DECODE_SETTINGS
from fastdistill.errors import FastDistillError
from fastdistill.utils.io import human_bytes

if TYPE_CHECKING:
    from fastdistill.data.folder_split import FolderSplit

WRITE_BYTES = 16 << 20  # pixels per write while building


class CacheFile:
    """A complete cache: ``path`` holds ``shape`` uint8 pixels; ``unreadable`` maps positions to their messages."""

    def __init__(self, path: Path, shape: tuple[int, ...], unreadable: dict[int, str]):
        self.path, self.shape, self.unreadable = path, shape, unreadable
        self.row = math.prod(shape[1:])

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Images ``start:stop``, read (not mapped)."""
        data = np.fromfile(self.path, dtype=np.uint8, count=(stop - start) * self.row, offset=start * self.row)
        return torch.from_numpy(data).view(stop - start, *self.shape[1:])

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(indices), *self.shape[1:], dtype=torch.uint8)
        view = out.view(len(indices), self.row).numpy()
        with open(self.path, "rb", buffering=0) as f:
            for j, i in enumerate(indices.tolist()):
                view[j] = np.frombuffer(os.pread(f.fileno(), self.row, i * self.row), dtype=np.uint8)
        return out

    def mapped(self) -> torch.Tensor:
        """All images, memory-mapped copy-on-write (writes never reach the file)."""
        return torch.from_numpy(np.memmap(self.path, dtype=np.uint8, mode="c", shape=self.shape))


def cache_files(split: FolderSplit) -> tuple[Path, Path, tuple[int, ...]]:
    """The cache's data file, header and shape for ``split``."""
    key = hashlib.sha256(f"{split.index.fingerprint}\n{split.image_size}\n{DECODE_SETTINGS}".encode()).hexdigest()
    stem = f"{split.name}-{split.image_size}px-{key[:32]}"
    folder = split.access.cache_path
    return folder / f"{stem}.u8", folder / f"{stem}.json", (len(split), 3, split.image_size, split.image_size)


def open_cache(data: Path, header: Path, shape: tuple[int, ...]) -> CacheFile | None:
    """The complete cache at ``data`` (``header`` present and sizes right), else None."""
    try:
        meta = json.loads(header.read_text())
        if meta["shape"] != list(shape) or data.stat().st_size != math.prod(shape):
            return None
        return CacheFile(data, shape, {int(k): str(v) for k, v in meta["unreadable"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_error(exc: OSError, path: Path, needed: int) -> FastDistillError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return FastDistillError(f"disk full while writing the decoded cache {path} (it needs {human_bytes(needed)}); "
                                "free some space or pass --cache-dir DIR on a larger disk")
    return FastDistillError(f"cannot write the decoded cache {path} ({exc.strerror or exc}); pass --cache-dir DIR "
                            "(a writable folder)")


@contextlib.contextmanager
def _replacing(path: Path, needed: int):
    """A temporary file next to ``path``, renamed onto it on success; OSErrors become one line naming the cache."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(exc, path, needed) from exc
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(exc, path, needed) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def build_cache(split: FolderSplit, data: Path, header: Path, shape: tuple[int, ...]) -> CacheFile:
    """Decode every image of ``split`` into ``data`` (one pass, progress bar), then write ``header``."""
    needed = math.prod(shape)
    try:
        data.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(data.parent).free
    except OSError as exc:
        raise _write_error(exc, data, needed) from exc
    if free < needed:
        raise FastDistillError(f"the decoded cache of {split.index.root} needs {human_bytes(needed)} but "
                               f"{data.parent} has {human_bytes(free)} free; pass --cache-dir DIR on a larger disk")
    batch = max(1, WRITE_BYTES // math.prod(shape[1:]))
    with _replacing(data, needed) as tmp, open(tmp, "wb") as f, \
            tqdm(total=shape[0], unit="img", desc=f"decoding {split.index.root} into the cache") as bar:
        for _, images, _ in split.decode_batches(batch):
            f.write(images.numpy().data)
            bar.update(len(images))
    meta = {"shape": list(shape), "root": str(split.index.root), "settings": DECODE_SETTINGS,
            "unreadable": {str(k): v for k, v in sorted(split.unreadable.items())}}
    text = json.dumps(meta, indent=1)
    with _replacing(header, len(text)) as tmp:
        tmp.write_text(text)
    return CacheFile(data, shape, dict(split.unreadable))

