"""Run ``python -m fastdistill ...`` as N gloo processes on this machine, as torchrun would start them.

``run_ranks(["delt", ...], 2)`` starts the processes with torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` on a free port), one CPU thread each, and returns their completed
processes in rank order. ``per_rank`` gives one rank other arguments (a mismatched ``--output``) or environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, size: int, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment torchrun gives rank ``rank`` of ``size`` on one node (plus ``extra``)."""
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_RANK": str(rank),
           "LOCAL_WORLD_SIZE": str(size), "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "OMP_NUM_THREADS": "1", "FASTDISTILL_DIST_TIMEOUT": "300", **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def start_ranks(args: Sequence[str], size: int, cwd: Path | None = None,
                per_rank: dict[int, tuple[Sequence[str] | None, dict[str, str] | None]] | None = None
                ) -> list[subprocess.Popen]:
    """Start ``size`` processes of ``python -m fastdistill *args``; ``per_rank[r] = (args or None, env or None)``."""
    port = free_port()
    procs = []
    for rank in range(size):
        own_args, own_env = (per_rank or {}).get(rank, (None, None))
        cmd = [sys.executable, "-m", "fastdistill", *(own_args if own_args is not None else args)]
        procs.append(subprocess.Popen(cmd, cwd=cwd or ROOT, env=rank_env(rank, size, port, own_env),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def run_ranks(args: Sequence[str], size: int, cwd: Path | None = None, timeout: float = 600,
              per_rank: dict[int, tuple[Sequence[str] | None, dict[str, str] | None]] | None = None
              ) -> list[subprocess.CompletedProcess]:
    """Run ``size`` ranks to completion; returns each rank's ``CompletedProcess`` (stdout, stderr, returncode)."""
    procs = start_ranks(args, size, cwd, per_rank)
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done
