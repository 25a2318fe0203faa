"""torch.distributed under ``torchrun``: who this process is, how work is dealt, and how ranks agree.

Without torchrun's environment (``WORLD_SIZE`` unset) there is one process and every helper here is a no-op, so a
command's code reads the same either way::

    init_from_env("auto")                      # cli.main: joins the job (NCCL on GPUs, gloo on CPUs)
    mine = deal(launches)                      # this rank's share: items[rank::size]
    path = agree(lambda: make_folder() if is_main() else None, broadcast=True)   # rank 0 decides, all learn
    parts = gather(my_results)                 # every rank's object, in rank order
    barrier()

Work is dealt by position, never by timing, so which rank does what depends only on the rank and the world size,
and each unit of work (a DELT group, an MGD chunk, a class) carries its own seed: the result does not depend on the
number of processes. A setup step that can fail on one rank only (a data root one node cannot see) runs inside
:func:`agree`, which turns the first rank's one-line error into the same error on every rank instead of a hang.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from fastdistill.errors import FastDistillError

T = TypeVar("T")
BACKEND_ENV = "FASTDISTILL_DIST_BACKEND"  # gloo | nccl: overrides the backend chosen from the device
TIMEOUT_ENV = "FASTDISTILL_DIST_TIMEOUT"  # seconds a collective may wait for the slowest rank (default 1800)


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes shared outputs and prints the summary."""
        return self.rank == 0

    @property
    def tag(self) -> str:
        """``"rank 1/2 "`` under torchrun with several processes (a prefix for progress bars); else ``""``."""
        return f"rank {self.rank}/{self.size} " if self.size > 1 else ""


class AgreedError(FastDistillError):
    """A setup error every rank raises together (printed once, by rank 0)."""


def launched() -> bool:
    """Whether torchrun (or an equivalent launcher) started this process: ``WORLD_SIZE`` and ``RANK`` are set."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def world() -> World:
    """The current process's :class:`World` (one process unless :func:`init_from_env` joined a job)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def is_main() -> bool:
    """Whether this process is rank 0 (always true without torchrun)."""
    return world().main


def init_from_env(device: str = "auto") -> World:
    """Join the torchrun job described by the environment (``env://``); without one, do nothing.

    The backend is NCCL when the job computes on CUDA devices (``device`` ``cuda``, or ``auto`` with a GPU visible),
    gloo otherwise; ``$FASTDISTILL_DIST_BACKEND`` overrides it. Each rank computes on ``cuda:LOCAL_RANK``.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return world()
    if not dist.is_available():
        raise FastDistillError("this PyTorch build has no torch.distributed; run the command without torchrun")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if cuda else "gloo")
    if backend not in ("gloo", "nccl"):
        raise FastDistillError(f"${BACKEND_ENV}={backend!r}: use gloo (CPUs) or nccl (GPUs)")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend == "nccl" or cuda:
        if not torch.cuda.is_available():
            raise FastDistillError(f"{'NCCL' if backend == 'nccl' else '--device cuda'} was asked for under torchrun "
                                   f"but no CUDA device is visible; use --device cpu (gloo) or unset {BACKEND_ENV}")
        if local_rank >= torch.cuda.device_count():
            raise FastDistillError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) "
                                   "are visible; start at most that many processes per node (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 1800)))
    dist.init_process_group(backend, timeout=timeout)
    return world()


def shutdown() -> None:
    """Leave the job (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """``device`` on this rank: a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; anything else as is."""
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def local_processes() -> int:
    """How many processes of the job run on this node (``LOCAL_WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if launched() else 1


def deal(items: Sequence[T], w: World | None = None, cost: Callable[[T], float] | None = None) -> list[T]:
    """This rank's share of ``items``: every ``size``-th item from position ``rank`` (round robin, by position).

    With ``cost``, balanced instead: items from the most to the least costly (ties by position) each go to the rank
    with the least cost so far (the lowest such rank); the share keeps the items' order.
    """
    w = w or world()
    if cost is None or w.size == 1:
        return list(items[w.rank::w.size])
    load = [0.0] * w.size
    owner = [0] * len(items)
    for i in sorted(range(len(items)), key=lambda i: (-cost(items[i]), i)):
        owner[i] = min(range(w.size), key=lambda r: (load[r], r))
        load[owner[i]] += cost(items[i])
    return [item for item, r in zip(items, owner, strict=True) if r == w.rank]


def barrier() -> None:
    """Wait until every rank gets here (no-op in one process)."""
    if world().size > 1:
        dist.barrier()


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank (``[obj]`` in one process)."""
    w = world()
    if w.size == 1:
        return [obj]
    out: list[Any] = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if world().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree(fn: Callable[[], T], broadcast: bool = False) -> T:
    """Run ``fn`` on every rank; if it raises :class:`FastDistillError` on any rank, raise on every rank.

    The error is the lowest failing rank's, prefixed with that rank when there are several processes, and raised as
    :class:`AgreedError` (printed once). ``broadcast``: return rank 0's result on every rank.
    """
    w = world()
    if w.size == 1:
        return fn()
    try:
        result, error = fn(), None
    except FastDistillError as exc:
        result, error = None, str(exc)
    errors = gather(error)
    for rank, message in enumerate(errors):
        if message is not None:
            raise AgreedError(f"rank {rank}: {message}")
    if broadcast:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return result


def same_on_all_ranks(value: Any, what: str) -> None:
    """Refuse, with one line, a setting (``what``) that differs between ranks (e.g. ``--output``)."""
    values = gather(value)
    if any(v != values[0] for v in values):
        shown = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
        raise AgreedError(f"the ranks were given different {what} ({shown}); give every rank the same")


def block(count: int, w: World | None = None) -> range:
    """This rank's contiguous share of ``range(count)`` (the first ``count % size`` ranks take one more), e.g. the
    classes whose per-class loss it computes: a class-major tensor's share is one slice."""
    w = w or world()
    base, extra = divmod(count, w.size)
    lo = w.rank * base + min(w.rank, extra)
    return range(lo, lo + base + (w.rank < extra))


def sum_shares_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks in place (no-op in one process). Where each element is non-zero on one rank
    only (every rank's share filled, zeros elsewhere) the sum is exact: ``x + 0 == x``."""
    if world().size > 1:
        dist.all_reduce(tensor)
    return tensor


class _SumForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


class _SumBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def sum_forward(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over the ranks; its gradient passes through unchanged (the result is a replica every rank
    holds, so the gradient arriving at it is already the same on every rank). ``x`` in one process."""
    return _SumForward.apply(x) if world().size > 1 else x


def sum_backward(x: torch.Tensor) -> torch.Tensor:
    """``x`` (a replica every rank holds) entering a computation each rank does on its share of the data: the
    gradients the ranks send back to it are summed. ``x`` in one process."""
    return _SumBackward.apply(x) if world().size > 1 else x
