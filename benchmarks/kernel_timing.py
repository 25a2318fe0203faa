"""Shared timing conventions of the fused-kernel benchmarks (bn_stat_loss, subtask_adam_step, recover iteration).

- Device: CUDA when available, else CPU; ``FASTDISTILL_BENCH_DEVICE=cpu`` forces the CPU on a GPU machine.
  ``FASTDISTILL_BENCH_THREADS=n`` sets torch's CPU threads (on a shared, loaded machine 1 thread avoids stalls at
  every parallel region, which otherwise swamp small ops).
- One pytest-benchmark *group* per shape/setting, one test per provider ("reference" = the DELT-style baseline from
  ``fastdistill.ops.reference``, "fastdistill" = the fused ops, optional extras) on the same inputs in the same run.
- On CUDA a timed round runs the callable ``calls_per_round`` times and then synchronises once, so launch queues are
  measured as they run in a loop and the synchronisation is not counted per call; ``summarize.py`` divides by it.
- ``extra_info`` records op, provider, shape, dtype, layout, calls_per_round and, for memory-bound ops, the bytes moved
  per call (for GB/s).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

DEVICE = torch.device(os.environ.get("FASTDISTILL_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
ON_CUDA = DEVICE.type == "cuda"
if os.environ.get("FASTDISTILL_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["FASTDISTILL_BENCH_THREADS"]))


def device_name() -> str:
    if ON_CUDA:
        return torch.cuda.get_device_name(DEVICE)
    import platform

    return platform.processor() or platform.machine()


def run(benchmark, fn: Callable[[], object], *, rounds: int, warmup: int = 1, calls_per_round: int | None = None,
        **extra_info) -> None:
    """Time ``fn`` with pytest-benchmark (pedantic: fixed rounds), synchronising CUDA at the end of each round."""
    calls = calls_per_round or (20 if ON_CUDA else 1)

    def timed() -> None:
        for _ in range(calls):
            fn()
        if ON_CUDA:
            torch.cuda.synchronize(DEVICE)

    benchmark.extra_info.update(extra_info, calls_per_round=calls, device=device_name(), torch=torch.__version__,
                                threads=torch.get_num_threads())
    benchmark.pedantic(timed, rounds=rounds, warmup_rounds=warmup, iterations=1)
