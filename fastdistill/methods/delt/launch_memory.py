"""How many groups one DELT launch holds: the measured bytes of one image at one recover iteration against the memory
the device has free, and launches that halve themselves when the device runs out of memory anyway.

The probe runs one recover iteration (all rows active) of one group and of two groups and takes the difference, so
what the launch needs whatever its size (weights, autocast's weight copies, kernel workspaces) cancels out:
- CUDA: the rise of ``torch.cuda.max_memory_allocated`` over the iteration (activations, their gradients, the Adam
  state, temporaries);
- CPU: the bytes autograd saves for the backward (``torch.autograd.graph.saved_tensors_hooks``, each storage once),
  plus :data:`CPU_STATE_COPIES` image-sized fp32 tensors per row for recover's own state (images, Adam moments,
  gradient buffer, gathered and cropped copies).
The budget is a fraction of free memory: ``torch.cuda.mem_get_info`` plus the allocator's unused cache on CUDA,
``MemAvailable`` of ``/proc/meminfo`` on the CPU (split between the node's torchrun processes);
``FASTDISTILL_LAUNCH_MEMORY`` (bytes, ``K``/``M``/``G`` suffixes) sets the budget instead, e.g. to share a device or to
test small launches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fastdistill.errors import FastDistillError
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.delt.planning import Group
from fastdistill.methods.delt.recover import recover
from fastdistill.methods.delt.schedule import GroupSchedule
from fastdistill.utils.distributed import local_processes

BUDGET_ENV = "FASTDISTILL_LAUNCH_MEMORY"
CUDA_FRACTION, CPU_FRACTION = 0.8, 0.5  # of free memory; the rest is headroom (fragmentation, other processes)
CPU_STATE_COPIES = 8
_SUFFIX = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass
class LaunchMemory:
    """What sized the launches (recorded in summary.json)."""

    bytes_per_image: int
    budget_bytes: int
    groups_per_launch: int


def parse_bytes(text: str) -> int:
    """``"123"``, ``"64M"``, ``"1.5G"`` (binary units) -> bytes."""
    value = text.strip().upper().removesuffix("B")
    scale = _SUFFIX.get(value[-1:], 1)
    try:
        number = float(value[:-1] if value[-1:] in _SUFFIX else value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise FastDistillError(f"{BUDGET_ENV}={text!r} is not a memory size; use bytes, e.g. 512M or 8G")
    return int(number * scale)


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(device: torch.device) -> int:
    """Bytes a launch may fill on ``device``: ``FASTDISTILL_LAUNCH_MEMORY``, else a fraction of free memory."""
    if (forced := os.environ.get(BUDGET_ENV)) is not None:
        return parse_bytes(forced)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(CUDA_FRACTION * (free + cached))
    return int(CPU_FRACTION * _available_ram()) // local_processes()


def _iteration_bytes(x0: torch.Tensor, labels: torch.Tensor, groups: int, teacher: nn.Module, cfg: DELTConfig,
                     bounds: tuple[torch.Tensor, torch.Tensor]) -> int:
    """Bytes one recover iteration of ``groups`` copies of ``x0`` (every row active) needs (module docstring)."""
    x = x0.repeat(groups, 1, 1, 1)
    y = labels.repeat(groups)
    schedule = GroupSchedule((tuple(range(x0.shape[0])),), 1)
    gens = [torch.Generator().manual_seed(g) for g in range(groups)]
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        base = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        recover(x, y, groups, schedule, teacher, cfg, bounds, gens, progress=False)
        torch.cuda.synchronize(x.device)
        return torch.cuda.max_memory_allocated(x.device) - base
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        recover(x, y, groups, schedule, teacher, cfg, bounds, gens, progress=False)
    return sum(seen.values()) + CPU_STATE_COPIES * x.numel() * 4


def image_bytes(x0: torch.Tensor, labels: torch.Tensor, teacher: nn.Module, cfg: DELTConfig,
                bounds: tuple[torch.Tensor, torch.Tensor]) -> int:
    """Measured bytes one more image adds to a launch: one group ``x0`` against two (module docstring)."""
    one = _iteration_bytes(x0, labels, 1, teacher, cfg, bounds)
    two = _iteration_bytes(x0, labels, 2, teacher, cfg, bounds)
    return max(1, -(-max(two - one, 0) // x0.shape[0]))


def size_launches(x0: torch.Tensor, labels: torch.Tensor, teacher: nn.Module, cfg: DELTConfig,
                  bounds: tuple[torch.Tensor, torch.Tensor], largest: int) -> LaunchMemory:
    """Groups per launch that fit the device's budget, between 1 and ``largest`` (what the schedule allows);
    ``x0``/``labels``: one group's initial images and labels, on the device."""
    per_image = image_bytes(x0, labels, teacher, cfg, bounds)
    budget = memory_budget(x0.device)
    fit = budget // (per_image * x0.shape[0])
    return LaunchMemory(per_image, budget, int(max(1, min(largest, fit))))


def run_launches(launches: list[list[Group]], run: Callable[[list[Group]], None],
                 on_halve: Callable[[int], None] | None = None) -> None:
    """``run`` every launch in order; one that raises ``torch.cuda.OutOfMemoryError`` is split in halves and retried,
    and every later launch is split to at most that half (``on_halve(new_limit)`` is told). Groups are independent,
    so the images do not change. One group that does not fit stops with a one-line error."""
    queue = list(launches)
    limit = max((len(launch) for launch in launches), default=1)
    while queue:
        launch = queue.pop(0)
        if len(launch) > limit:
            queue[:0] = [launch[i:i + limit] for i in range(0, len(launch), limit)]
            continue
        try:
            run(launch)
            continue
        except torch.cuda.OutOfMemoryError:
            if len(launch) == 1:
                raise FastDistillError(f"one group of {len(launch[0].classes)} images does not fit in device memory; "
                                       "lower --batch-size or the image size") from None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        limit = (len(launch) + 1) // 2
        if on_halve is not None:
            on_halve(limit)
        queue.insert(0, launch)
