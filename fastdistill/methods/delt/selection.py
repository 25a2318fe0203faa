"""Selection of the initial real images: rank each class by the teacher's probability of the true class.

Modes (DELT data_selection.py): ``top`` (most confident first), ``min`` (least confident first), ``medium`` (nearest the
class median first: ascending order, mid = ceil(n/2), then mid, mid+1, mid-1, mid+2, ...), ``random``. The returned
order is the scheduling priority: rank 0 joins the optimisation first. The scores come from one streamed pass over the
train split (``score_split``), so only labels and one float per image stay in memory.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from fastdistill.data.base import Split
from fastdistill.errors import FastDistillError
from fastdistill.utils.io import torch_load_checkpoint, torch_save

MODES = ("top", "min", "medium", "random")


SCORE_BATCH = 500  # images per teacher forward while scoring
CHUNK_BATCHES = 20  # batches per resumable chunk of scores


@torch.no_grad()
def true_class_probability(teacher: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                           prepare: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """p_teacher(y | x) of one uint8 batch (``prepare`` maps it to the teacher's input); NaN where the label is
    ``SKIPPED`` (an unreadable file)."""
    device = next(teacher.parameters()).device
    probs = teacher(prepare(images.to(device))).float().softmax(1)
    labels = labels.to(device)
    p = probs.gather(1, labels.clamp(min=0)[:, None]).squeeze(1)
    return torch.where(labels >= 0, p, torch.nan).cpu()


def _load_chunk(path: Path, start: int, stop: int) -> dict | None:
    saved = torch_load_checkpoint(path)
    if saved is None:
        return None
    try:
        ok = saved["start"] == start and saved["stop"] == stop and saved["scores"].shape == (stop - start,) \
            and saved["labels"].shape == (stop - start,)
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        tqdm.write(f"warning: {path} does not hold the scores of images {start}:{stop}; redoing them", file=sys.stderr)
    return saved if ok else None


def score_split(teacher: nn.Module, split: Split, prepare: Callable[[torch.Tensor], torch.Tensor],
                chunk_dir: Path | None = None, batch_size: int = SCORE_BATCH, chunk_batches: int = CHUNK_BATCHES,
                progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, labels)`` of every train image in one streamed pass over ``split.batches``.

    ``scores``: :func:`true_class_probability`; ``labels``: as read (``SKIPPED`` for an unreadable file, which never
    joins a class). With ``chunk_dir`` every ``chunk_batches`` batches are saved there and a chunk already saved (and
    readable) is not scored again.
    """
    n, chunk = len(split), batch_size * chunk_batches
    starts = list(range(0, n, chunk))
    parts: list[dict | None] = [None] * len(starts)
    files = [None if chunk_dir is None else chunk_dir / f"scores_{a:010d}.pt" for a in starts]
    for k, (a, f) in enumerate(zip(starts, files, strict=True)):
        parts[k] = None if f is None else _load_chunk(f, a, min(a + chunk, n))
    done = sum(p["stop"] - p["start"] for p in parts if p is not None)
    with tqdm(total=n, initial=done, unit="img", desc="scoring train images", disable=not progress) as bar:
        k = 0
        while k < len(starts):
            if parts[k] is not None:
                k += 1
                continue
            last = k
            while last + 1 < len(starts) and parts[last + 1] is None:
                last += 1
            scores, labels = [], []
            for offset, images, y in split.batches(batch_size, starts[k], min(starts[last] + chunk, n)):
                scores.append(true_class_probability(teacher, images, y, prepare))
                labels.append(y.clone())
                bar.update(len(y))
                end = offset + len(y)
                if end == min(starts[k] + chunk, n):
                    parts[k] = {"start": starts[k], "stop": end, "scores": torch.cat(scores),
                                "labels": torch.cat(labels)}
                    if files[k] is not None:
                        torch_save(files[k], parts[k])
                    scores, labels, k = [], [], k + 1
    return torch.cat([p["scores"] for p in parts]), torch.cat([p["labels"] for p in parts])


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
