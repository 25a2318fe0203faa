"""Fingerprints of a run's inputs (teacher weights, diffusion model, expert buffer, data) so ``--resume`` can tell them
apart by content rather than by path."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from fastdistill.errors import FastDistillError

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB chunks; a one-line error names an unreadable file."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
    except OSError as exc:
        raise FastDistillError(f"cannot read {path} ({exc.strerror or type(exc).__name__})") from exc
    return digest.hexdigest()


def files_sha256(root: str | os.PathLike, files: Iterable[Path]) -> str:
    """One sha256 over the relative names (to ``root``) and contents of ``files``, in sorted order."""
    root = Path(root)
    digest = hashlib.sha256()
    for f in sorted(Path(p) for p in files):
        digest.update(f"{f.relative_to(root).as_posix()}\0{file_sha256(f)}\n".encode())
    return digest.hexdigest()

