"""Latents of the real training images, cached on disk in chunks so encoding is resumable and reusable.

Layout of a cache folder: ``meta.json`` (what was encoded: codec, dataset, image count, content hash, chunk size) and
``chunk_00000.pt`` … (fp16 latents of ``chunk`` consecutive images). An interrupted encode resumes at the first
missing chunk; a cache made for other data or another codec is refused rather than silently reused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastdistill.data.base import to_float
from fastdistill.errors import FastDistillError
from fastdistill.utils.io import read_json, torch_load_checkpoint, torch_save, write_json


def content_hash(images: torch.Tensor) -> str:
    """SHA-1 of the uint8 image bytes (identifies the data a cache was made from)."""
    return hashlib.sha1(memoryview(images.contiguous().numpy()).cast("B")).hexdigest()


CHUNK = 1024  # images per cache file


def encode_cached(codec, images: torch.Tensor, cache_dir: Path, batch_size: int, device: torch.device,
                  progress: bool = False) -> torch.Tensor:
    """Latents (fp32, CPU) of uint8 ``images`` [N,C,H,W] through ``codec.encode`` (``batch_size`` images at a time),
    read from / written to ``cache_dir``."""
    meta = {"codec": codec.fingerprint, "count": int(images.shape[0]), "shape": list(images.shape[1:]),
            "sha1": content_hash(images), "chunk": CHUNK, "dtype": "float16"}
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta_file = cache_dir / "meta.json"
    if meta_file.exists():
        old = read_json(meta_file)
        if old != meta:
            changed = ", ".join(k for k in meta if old.get(k) != meta[k])
            raise FastDistillError(f"latent cache {cache_dir} was made for other data or another model ({changed} "
                                   "differ); pass another --latent-cache or delete that folder")
    else:
        write_json(meta_file, meta)
    parts = []
    starts = range(0, images.shape[0], CHUNK)
    for k, start in enumerate(tqdm(starts, desc="encoding real images", leave=False, disable=not progress)):
        file = cache_dir / f"chunk_{k:05d}.pt"
        part = torch_load_checkpoint(file)
        if part is None:
            block = images[start:start + CHUNK]
            part = torch.cat([codec.encode(to_float(block[i:i + batch_size]).to(device)).to(torch.float16).cpu()
                              for i in range(0, block.shape[0], batch_size)])
            torch_save(file, part)
        parts.append(part)
    return torch.cat(parts).float()
