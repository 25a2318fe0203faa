"""File output and input with one-line errors.

Writes go to a temporary file in the same folder, then one rename; a failed write removes the temporary file and
raises a ``FastDistillError`` naming the path (for a full disk: how much the step needs and how much is free).
Reads of files that cannot be recomputed raise a ``FastDistillError`` naming the file; resumable checkpoints that
cannot be read are reported on one line and treated as absent, so the step is redone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from fastdistill.errors import FastDistillError

# What torch.load raises on an empty, truncated or garbled file.
UNREADABLE = (EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, OSError)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.is_dir():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def _blocking_file(path: Path) -> Path | None:
    """The first existing non-folder among ``path``'s parents (a file where a folder is needed)."""
    for folder in reversed(path.parents):
        if folder.exists() and not folder.is_dir():
            return folder
    return None


def write_error(exc: OSError, path: str | os.PathLike, needed: int | None = None) -> FastDistillError:
    """One line for an OSError raised while writing ``path``; ``needed`` is the step's size in bytes, if known."""
    path = Path(path)
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(path.parent)
        need = f"this step needs about {human_bytes(needed)}" if needed else "the step needs more space"
        have = f", {human_bytes(free)} free" if free is not None else ""
        return FastDistillError(f"disk full while writing {path} ({need}{have}); free some space or choose another "
                                "--output, then rerun with --resume")
    if code == errno.EROFS:
        return FastDistillError(f"cannot write {path}: the file system is read-only; choose another --output")
    if code in (errno.EACCES, errno.EPERM):
        return FastDistillError(f"cannot write {path}: permission denied; choose another --output")
    blocker = _blocking_file(path)
    if blocker is not None or code == errno.ENOTDIR:
        where = blocker if blocker is not None else path.parent
        return FastDistillError(f"cannot write {path}: {where} is a file, not a folder; choose another --output")
    if code == errno.EISDIR or path.is_dir():
        return FastDistillError(f"cannot write {path}: a folder of that name is in the way; remove it or choose "
                                "another --output")
    return FastDistillError(f"cannot write {path}: {exc.strerror or exc}")


def ensure_dir(path: str | os.PathLike) -> Path:
    """``mkdir -p`` with a one-line error (a file in the way, read-only, disk full)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path) from exc
    return path


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or the failed ``write`` that torch.save reports as a RuntimeError."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, RuntimeError) and isinstance(exc.__context__, OSError):
        return exc.__context__
    return None



@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    An OSError on the way (also one wrapped by the writer) becomes a one-line ``FastDistillError``; ``needed`` (bytes)
    is quoted when the disk is full (default: what was written before the failure).
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(exc, path, needed) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        cause = _os_error(exc)
        if cause is None:
            raise
        size = needed or (os.path.getsize(tmp) if os.path.exists(tmp) else None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # before measuring the free space
        raise write_error(cause, path, size) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes, needed: int | None = None) -> None:
    """Write ``data`` to ``path`` (not atomically: for files inside a temporary folder) with one-line errors."""
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise write_error(exc, path, needed or len(data)) from exc


def write_json(path: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    with atomic_path(path, needed=len(text.encode())) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a malformed or unreadable one is a one-line error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FastDistillError(f"{path} is not valid JSON ({str(exc).splitlines()[0][:80]}); restore it or rerun "
                               "the command that wrote it") from exc
    except OSError as exc:
        raise FastDistillError(f"cannot read {path}: {exc.strerror or exc}") from exc


def payload_bytes(obj: Any) -> int:
    """An estimate of the bytes ``torch.save`` writes for ``obj`` (tensor storages plus a little per item)."""
    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().nbytes() + 64
    if isinstance(obj, dict):
        return sum(payload_bytes(k) + payload_bytes(v) for k, v in obj.items()) + 16
    if isinstance(obj, list | tuple):
        return sum(payload_bytes(v) for v in obj) + 16
    if isinstance(obj, str | bytes):
        return len(obj) + 8
    return 16


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path, needed=payload_bytes(obj)) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def torch_load(path: str | os.PathLike, what_to_do: str = "rerun the command that wrote it") -> Any:
    """Load tensors/containers only (``weights_only=True``); a missing or unreadable file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise FastDistillError(f"{path} not found; {what_to_do}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as exc:
        raise FastDistillError(f"{path} cannot be read ({_reason(exc, path)}); {what_to_do}") from exc


def torch_load_checkpoint(path: str | os.PathLike, mmap: bool = False) -> Any | None:
    """A resumable unit's checkpoint, or None when it is absent or unreadable: the caller redoes that unit.

    An unreadable file (empty, truncated, garbled) is reported on one line of stderr (above any progress bar).
    ``mmap`` maps the tensors' storages from the file instead of reading them into memory.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except UNREADABLE as exc:
        tqdm.write(f"warning: {path} cannot be read ({_reason(exc, path)}); redoing that step", file=sys.stderr)
        return None


def _reason(exc: BaseException, path: Path) -> str:
    if path.is_file() and path.stat().st_size == 0:
        return "empty file"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"truncated or corrupt: {type(exc).__name__}"
