"""DELT's work plan: class-contiguous groups (the reference's batches) with their EarlyLate schedules, batched into
launches that optimise several groups at once, and the seed of each group's generator.

Every group draws its augmentation from its own generator, so a group's images do not depend on which groups share
its launch: the launch size (fixed, sized to the device's memory, or halved after an out-of-memory error) changes the
speed, not the result.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.delt.schedule import GroupSchedule, class_rounds, group_schedule
from fastdistill.utils.seed import generator

# Images one launch may optimise at once when its size is not measured (PDD's DELT stages): 20 groups of 100 rows.
MAX_IMAGES_PER_LAUNCH = 2000
# Group generators are seeded seed * SEED_STRIDE + STAGE_STRIDE * stage + group id (this package's choice):
# distinct (seed, stage, group) get distinct seeds while there are fewer than 7919 groups and 126 stages.
SEED_STRIDE, STAGE_STRIDE = 1_000_003, 7919


@dataclass
class Group:
    """One reference batch: rows (class, in-class rank), the train indices of their initial images, its schedule."""

    gid: int
    classes: list[int]
    ranks: list[int]
    indices: torch.Tensor
    schedule: GroupSchedule


def plan_groups(chosen: list[torch.Tensor], cfg: DELTConfig) -> list[Group]:
    """Class-contiguous batches of ``batch_size`` rows, each with its EarlyLate schedule."""
    rows = [(c, rank, int(idx)) for c, per_class in enumerate(chosen) for rank, idx in enumerate(per_class)]
    rounds = class_rounds(len(chosen), cfg.iterations, cfg.round_iterations, cfg.resolved_min_iterations,
                          generator(cfg.seed))
    groups = []
    for gid, start in enumerate(range(0, len(rows), cfg.batch_size)):
        part = rows[start:start + cfg.batch_size]
        classes, ranks = [r[0] for r in part], [r[1] for r in part]
        groups.append(Group(gid, classes, ranks, torch.tensor([r[2] for r in part]),
                            group_schedule(classes, ranks, cfg.ipc, rounds, cfg.round_iterations)))
    return groups


def plan_launches(groups: list[Group], cfg: DELTConfig, limit: int | None = None,
                  same: Callable[[Group], Hashable] = lambda g: ()) -> list[list[Group]]:
    """Batch groups that share size, schedule and ``same(group)`` into launches of at most ``groups_per_launch``
    groups (else ``limit``, else :data:`MAX_IMAGES_PER_LAUNCH` images), ordered by first group; one group per launch
    in compat mode."""
    if cfg.mode == "compat":
        return [[g] for g in groups]
    limit = cfg.groups_per_launch or limit or max(1, MAX_IMAGES_PER_LAUNCH // cfg.batch_size)
    buckets: dict[tuple, list[Group]] = {}
    for g in groups:
        buckets.setdefault((len(g.classes), g.schedule.active, same(g)), []).append(g)
    launches = []
    for bucket in buckets.values():
        launches += [bucket[i:i + limit] for i in range(0, len(bucket), limit)]
    return sorted(launches, key=lambda launch: launch[0].gid)


def largest_launch(groups: list[Group], cfg: DELTConfig) -> int:
    """The most groups the schedule lets one launch hold: the largest set of groups sharing size and schedule."""
    if cfg.mode == "compat":
        return 1
    counts: dict[tuple, int] = {}
    for g in groups:
        key = (len(g.classes), g.schedule.active)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=1)


def group_seed(seed: int, gid: int, stage: int = 0) -> int:
    """The seed of group ``gid``'s generator (``stage`` 0 for a one-shot DELT run)."""
    return seed * SEED_STRIDE + STAGE_STRIDE * stage + gid


def group_generators(seed: int, launch: list[Group], stage: int = 0) -> list[torch.Generator]:
    """One CPU generator per group of ``launch`` (see :func:`group_seed`)."""
    return [generator(group_seed(seed, g.gid, stage)) for g in launch]
