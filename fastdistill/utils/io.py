"""File input and output: atomic writes (a temporary file in the same folder, then a rename) and checked loads."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fastdistill.errors import FastDistillError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load(path: str | os.PathLike) -> Any:
    """Load tensors/containers only (``weights_only=True``): safe on untrusted files."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_or_raise(path: str | os.PathLike, remedy: str) -> Any:
    """:func:`torch_load`, or a one-line :class:`FastDistillError`: ``path`` is unreadable, and ``remedy``."""
    try:
        return torch_load(path)
    except Exception as exc:
        raise FastDistillError(f"{path} is unreadable ({type(exc).__name__}); {remedy}") from exc
