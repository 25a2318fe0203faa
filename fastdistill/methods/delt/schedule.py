"""EarlyLate scheduling, learning-rate and crop-scale curricula (DELT recover.py semantics, spec delt.md §4.3, §5).

Within a class, images are ranked (selection order); the class's ``ipc`` images are split over its rounds and rank ``i``
joins at the first round whose cumulative size exceeds ``i``; once active an image stays active. A batch (group) runs
as many rounds as its longest class; rounds where nobody is active are dropped and shorten the cosine horizon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def class_rounds(num_classes: int, iterations: int, round_iterations: int, min_iterations: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Rounds per class: uniform in [min_iterations // RI, iterations // RI] (all equal when min == iterations)."""
    hi = iterations // round_iterations
    lo = min_iterations // round_iterations
    if lo == hi:
        return torch.full((num_classes,), hi, dtype=torch.long)
    return torch.randint(lo, hi + 1, (num_classes,), generator=generator)


def round_sizes(ipc: int, rounds: int) -> list[int]:
    """How many images of a class join in each round: floor(ipc / R), plus one for the first ipc mod R rounds."""
    return [ipc // rounds + (1 if r < ipc % rounds else 0) for r in range(rounds)]


def join_round(rank: int, ipc: int, rounds: int) -> int:
    """The round in which the image of in-class ``rank`` joins the optimisation."""
    cum = 0
    for r, k in enumerate(round_sizes(ipc, rounds)):
        cum += k
        if rank < cum:
            return r
    raise ValueError(f"rank {rank} out of range for ipc {ipc}")


@dataclass(frozen=True)
class GroupSchedule:
    """Active rows of one group (batch) per round, after empty rounds are removed."""

    active: tuple[tuple[int, ...], ...]  # per round: row indices (within the group) optimised in that round
    round_iterations: int

    @property
    def total_iterations(self) -> int:
        return len(self.active) * self.round_iterations

    def iterations_per_row(self, num_rows: int) -> list[int]:
        counts = [0] * num_rows
        for rows in self.active:
            for i in rows:
                counts[i] += self.round_iterations
        return counts


def group_schedule(classes: list[int], ranks: list[int], ipc: int, rounds_of_class: torch.Tensor,
                   round_iterations: int) -> GroupSchedule:
    """Schedule of a group whose row ``j`` is the image of in-class rank ``ranks[j]`` of class ``classes[j]``."""
    n_rounds = max(int(rounds_of_class[c]) for c in set(classes))
    active: list[list[int]] = [[] for _ in range(n_rounds)]
    for row, (c, rank) in enumerate(zip(classes, ranks, strict=True)):
        r_c = int(rounds_of_class[c])
        for r in range(join_round(rank, ipc, r_c), r_c):
            active[r].append(row)
    return GroupSchedule(tuple(tuple(rows) for rows in active if rows), round_iterations)


def cosine_lr(lr0: float, iteration: int, total: int) -> float:
    """0.5 (1 + cos(pi t / T)) lr0, no warm-up."""
    return 0.5 * (1 + math.cos(math.pi * iteration / total)) * lr0


def min_crop_scale(iteration: int, total: int, milestone: float = 1.0, mode: str = "cosine",
                   floor: float = 0.08) -> float:
    """CDA crop curriculum: the lower bound of RandomResizedCrop's scale, from 1.0 down to ``floor``."""
    horizon = milestone * total
    if iteration >= horizon or mode == "none":
        return floor
    if mode == "step":
        return 1.0
    if mode == "linear":
        return floor + (1.0 - floor) * (1 - iteration / horizon)
    if mode == "cosine":
        return floor + (1.0 - floor) * (1 + math.cos(math.pi * iteration / horizon)) / 2
    raise ValueError(f"unknown crop curriculum {mode!r}")
