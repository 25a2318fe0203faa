"""One process per run folder: ``with run_lock(run_dir):`` around everything a command writes there.

The lock is ``RUN/.lock``, held with ``fcntl.flock`` and holding the holder's pid, host and start time. The kernel drops
the lock when its holder dies, so a lock file left by a killed process is stale and simply taken over; a live holder
makes the second process stop with one line saying who holds the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fastdistill.errors import FastDistillError
from fastdistill.utils.io import ensure_dir, write_error

LOCK_FILE = ".lock"
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def _holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def _in_use(run_dir: Path, info: dict) -> FastDistillError:
    pid, host, started = info.get("pid", "?"), info.get("host"), info.get("started", "?")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return FastDistillError(f"{run_dir} is in use by pid {pid}{where} (started {started}); wait for it to finish or "
                            "stop it, then rerun")


def _acquire(run_dir: Path) -> int:
    """Open and lock ``RUN/.lock``; retries when the file was replaced between opening and locking."""
    path = run_dir / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(exc, path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in UNSUPPORTED:
                print(f"warning: {run_dir}'s file system cannot lock files; nothing stops a second process from "
                      "using this run folder", file=sys.stderr)
                return fd
            info = _holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _in_use(run_dir, info) from None
            raise write_error(exc, path) from exc
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not unlinked by a releasing holder after we opened it
            return fd
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``run_dir`` for this process; yields the lock file's path.

    Raises a one-line ``FastDistillError`` naming the holder's pid when another live process holds it. A folder that
    did not exist is created, and removed again on release if nothing else was written to it.
    """
    created = not Path(run_dir).exists()
    run_dir = ensure_dir(run_dir)
    try:
        fd = _acquire(run_dir)
    except FastDistillError:
        if created:
            _remove_if_empty(run_dir)
        raise
    path = run_dir / LOCK_FILE
    try:
        stale = _holder(fd)
        if stale:
            print(f"warning: {path} was left by pid {stale.get('pid', '?')} (started {stale.get('started', '?')}), "
                  "which has stopped; taking it over", file=sys.stderr)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError as exc:
            raise write_error(exc, path) from exc
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still locked, so no one can lock the old file after us
        os.close(fd)
        if created:
            _remove_if_empty(run_dir)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
