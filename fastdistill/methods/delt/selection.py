"""Selection of the initial real images: rank each class by the teacher's probability of the true class.

Modes (DELT data_selection.py): ``top`` (most confident first), ``min`` (least confident first), ``medium`` (nearest the
class median first: ascending order, mid = ceil(n/2), then mid, mid+1, mid-1, mid+2, ...), ``random``. The returned
order is the scheduling priority: rank 0 joins the optimisation first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fastdistill.errors import FastDistillError

MODES = ("top", "min", "medium", "random")


@torch.no_grad()
def true_class_probability(teacher: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                           prepare: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 500) -> torch.Tensor:
    """p_teacher(y | x) for uint8 ``images`` (``prepare`` maps a uint8 batch to the teacher's input)."""
    device = next(teacher.parameters()).device
    scores = []
    for i in range(0, images.shape[0], batch_size):
        x = prepare(images[i:i + batch_size].to(device))
        probs = teacher(x).float().softmax(1)
        scores.append(probs.gather(1, labels[i:i + batch_size].to(device)[:, None]).squeeze(1).cpu())
    return torch.cat(scores)


def medium_order(n: int, ipc: int) -> list[int]:
    """Positions (in ascending-score order) taken by ``medium``: mid, mid+1, mid-1, mid+2, ... with mid = ceil(n/2).

    The reference indexes past the end when ipc approaches n; here out-of-range positions are skipped and the
    alternation continues until ``ipc`` positions are found.
    """
    mid = math.ceil(n / 2)
    out, k = [], 0
    while len(out) < ipc:
        step = (k + 1) // 2
        pos = mid + step if k % 2 == 1 else mid - step
        if 0 <= pos < n:
            out.append(pos)
        k += 1
    return out


def rank_class(scores: torch.Tensor, ipc: int, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices into ``scores`` (one class) of the ``ipc`` images chosen, in priority order. Ties: lower index first."""
    n = scores.numel()
    if mode == "random":
        return torch.randperm(n, generator=generator)[:ipc]
    ascending = torch.sort(scores, stable=True).indices
    if mode == "min":
        return ascending[:ipc]
    if mode == "top":
        return torch.sort(-scores, stable=True).indices[:ipc]
    if mode == "medium":
        return ascending[torch.tensor(medium_order(n, ipc), dtype=torch.long)]
    raise FastDistillError(f"unknown selection mode {mode!r}; use one of {', '.join(MODES)}")


def select_initial(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, ipc: int, mode: str,
                   generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Per class, the train-set indices of the ``ipc`` initial images in priority order."""
    chosen = []
    for c in range(num_classes):
        idx = (labels == c).nonzero().flatten()
        if idx.numel() < ipc:
            raise FastDistillError(f"--ipc {ipc} is larger than class {c}'s {idx.numel()} training images; "
                                   f"use --ipc {idx.numel()} or fewer")
        chosen.append(idx[rank_class(scores[idx], ipc, mode, generator)])
    return chosen
