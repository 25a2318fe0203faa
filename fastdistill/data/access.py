"""How a streamed split is read: decoding workers, the decoded cache's folder, and what a corrupt file does."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "FASTDISTILL_CACHE"
MAX_DEFAULT_WORKERS = 8


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_cache_dir() -> Path:
    """``$FASTDISTILL_CACHE``, else ``~/.cache/fastdistill``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fastdistill")


@dataclass(frozen=True)
class DataAccess:
    """``workers``: DataLoader processes that decode (None: the CPU count, at most 8; 0: decode in this process);
    ``cache_dir``: where decoded caches live (None: :func:`default_cache_dir`); ``skip_corrupt``: skip and count
    unreadable files instead of stopping at the first."""

    workers: int | None = None
    cache_dir: str | None = None
    skip_corrupt: bool = False

    @property
    def num_workers(self) -> int:
        return min(cpu_count(), MAX_DEFAULT_WORKERS) if self.workers is None else self.workers

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()
