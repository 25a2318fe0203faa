"""Latents of the real training images, encoded in one streamed pass into an on-disk cache that is reused and resumed.

Layout of a cache folder: ``meta.json`` (what was encoded: codec, data identity, image count, chunk size, dtype) and
``chunk_00000.pt`` … (float16 latents of ``CHUNK`` consecutive images, each written atomically). The split is read
batch by batch (``split.batches``), so only one chunk of images and latents is in memory at a time. An interrupted
encode resumes at the first missing or unreadable chunk; a cache made for other data or another codec is refused.
The chunks are memory-mapped when read back (:class:`LatentCache`): readers gather the rows they need (mode discovery
reads one batch of classes at a time) and the whole latent tensor is never loaded. Under torchrun the chunks are
dealt to the ranks (each encodes its own into the shared cache folder) and every rank then maps all of them.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastdistill.data.base import Dataset, Split, to_float
from fastdistill.errors import FastDistillError
from fastdistill.utils import distributed
from fastdistill.utils.io import ensure_dir, read_json, torch_load_checkpoint, torch_save, write_json

CHUNK = 1024  # images per cache file


class LatentCache:
    """float16 latents ``[N, *latent_shape]`` of a split, memory-mapped from the chunk files of a cache folder."""

    def __init__(self, chunks: list[torch.Tensor], chunk: int):
        self.chunks, self.chunk = chunks, chunk
        self.shape = torch.Size((sum(c.shape[0] for c in chunks), *chunks[0].shape[1:]))

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """float16 latents at ``indices`` (in that order): only the pages that hold them are read."""
        indices = indices.long().cpu()
        out = torch.empty(indices.shape[0], *self.shape[1:], dtype=torch.float16)
        which = torch.div(indices, self.chunk, rounding_mode="floor")
        for k in which.unique().tolist():
            sel = (which == k).nonzero().flatten()
            out[sel] = self.chunks[k][indices[sel] - k * self.chunk]
        return out


def content_hash(split: Split, batch_size: int = CHUNK) -> str:
    """SHA-1 of the uint8 image bytes of ``split``, read batch by batch."""
    digest = hashlib.sha1()
    for _, images, _ in split.batches(batch_size):
        digest.update(memoryview(images.contiguous().numpy()).cast("B"))
    return digest.hexdigest()


def data_identity(data: Dataset) -> str:
    """What the cached latents were encoded from: the data root's fingerprint (file list, sizes, modification times)
    with the decode settings, or, for data without a fingerprint (the built-in sets), a hash of the image bytes."""
    info = data.info
    if data.fingerprint:
        return (f"{data.fingerprint} decoded to {info.channels}x{info.image_size}x{info.image_size} "
                f"({info.name})")
    return f"sha1:{content_hash(data.train)} ({info.name})"


def cache_meta(codec, count: int, data_id: str) -> dict:
    """What a cache folder's ``meta.json`` records: codec, data identity, image count, chunk size and dtype."""
    return {"codec": codec.fingerprint, "data": data_id, "count": count, "chunk": CHUNK, "dtype": "float16"}


def check_cache(cache_dir: Path, meta: dict) -> bool:
    """True if ``cache_dir`` holds a cache with ``meta``, False if it holds none; one line if it holds another."""
    meta_file = cache_dir / "meta.json"
    if not meta_file.exists():
        return False
    old = read_json(meta_file)
    if old != meta:
        changed = ", ".join(k for k in meta if not isinstance(old, dict) or old.get(k) != meta[k]) or "format"
        raise FastDistillError(f"latent cache {cache_dir} was made for other data or another model ({changed} "
                               "differ); pass another --latent-cache or delete that folder")
    return True


def _read_chunk(file: Path, rows: int) -> torch.Tensor | None:
    """The chunk in ``file`` (memory-mapped) if it holds ``rows`` latents; None when absent or unreadable."""
    part = torch_load_checkpoint(file, mmap=True)
    if part is None:
        return None
    if isinstance(part, torch.Tensor) and part.dtype == torch.float16 and part.dim() >= 2 and part.shape[0] == rows:
        return part
    tqdm.write(f"warning: {file} does not hold {rows} float16 latents; redoing that step", file=sys.stderr)
    return None


def encode_cached(codec, split: Split, cache_dir: Path, batch_size: int, device: torch.device, data_id: str,
                  progress: bool = False) -> LatentCache:
    """Latents of ``split``'s images through ``codec.encode`` (``batch_size`` images at a time), encoded into
    ``cache_dir`` chunk by chunk (finished chunks are reused) and returned memory-mapped. ``data_id`` identifies the
    data (:func:`data_identity`); a cache made from other data or with another codec is refused."""
    count = len(split)
    meta = cache_meta(codec, count, data_id)

    def open_cache() -> None:  # rank 0 checks the folder and writes meta.json; every rank then checks it
        if distributed.is_main() and not check_cache(cache_dir, meta):
            ensure_dir(cache_dir)
            write_json(cache_dir / "meta.json", meta)

    distributed.agree(open_cache)
    distributed.agree(lambda: check_cache(cache_dir, meta) or _missing(cache_dir))
    starts = list(enumerate(range(0, count, CHUNK)))

    def encode_mine() -> None:  # this rank's chunks (all of them in one process)
        mine = distributed.deal(starts)
        for k, start in tqdm(mine, desc="encoding real images", leave=False, disable=not progress):
            file, stop = cache_dir / f"chunk_{k:05d}.pt", min(start + CHUNK, count)
            if _read_chunk(file, stop - start) is None:
                encoded = [codec.encode(to_float(images).to(device)).to(torch.float16).cpu()
                           for _, images, _ in split.batches(batch_size, start, stop)]
                torch_save(file, torch.cat(encoded))

    distributed.agree(encode_mine)
    chunks = []
    for k, start in starts:  # mapped, not held: memory stays one chunk
        part = _read_chunk(cache_dir / f"chunk_{k:05d}.pt", min(start + CHUNK, count) - start)
        if part is None:
            raise FastDistillError(f"latent cache {cache_dir}: chunk {k} is missing after encoding; --latent-cache "
                                   "must be on a file system every rank shares")
        chunks.append(part)
    return LatentCache(chunks, CHUNK)


def _missing(cache_dir: Path) -> bool:
    raise FastDistillError(f"cannot see the latent cache {cache_dir} that rank 0 created; --latent-cache must be on "
                           "a file system every rank shares")
