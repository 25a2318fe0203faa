"""Selection of the initial real images: rank each class by the teacher's probability of the true class.

Modes (DELT data_selection.py): ``top`` (most confident first), ``min`` (least confident first), ``medium`` (nearest the
class median first: ascending order, mid = ceil(n/2), then mid, mid+1, mid-1, mid+2, ...), ``random``. The returned
order is the scheduling priority: rank 0 joins the optimisation first. The scores come from one streamed pass over the
train split (``score_split``), so only labels and one float per image stay in memory.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Collection
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


def chunk_starts(n: int, batch_size: int = SCORE_BATCH, chunk_batches: int = CHUNK_BATCHES) -> list[int]:
    """First image of each resumable chunk of scores (a chunk is ``chunk_batches`` batches of ``batch_size``)."""
    return list(range(0, n, batch_size * chunk_batches))


def _chunk_file(chunk_dir: Path, start: int) -> Path:
    return chunk_dir / f"scores_{start:010d}.pt"


def score_chunks(teacher: nn.Module, split: Split, prepare: Callable[[torch.Tensor], torch.Tensor],
                 chunk_dir: Path | None = None, positions: Collection[int] | None = None,
                 batch_size: int = SCORE_BATCH, chunk_batches: int = CHUNK_BATCHES, progress: bool = True,
                 desc: str = "scoring train images") -> dict[int, dict]:
    """Score the chunks at ``positions`` (default: all) in streamed passes over ``split.batches``; returns them by
    position. With ``chunk_dir`` each chunk is saved there, and one already saved (and readable) is not scored again.

    A chunk's batches start at the chunk's first image, so its scores do not depend on which chunks one process
    scores (the chunks of a split can be dealt to several processes and gathered through ``chunk_dir``).
    """
    n, chunk = len(split), batch_size * chunk_batches
    starts = chunk_starts(n, batch_size, chunk_batches)
    wanted = sorted(set(range(len(starts)) if positions is None else positions))
    parts: dict[int, dict] = {}
    for k in wanted:
        if chunk_dir is not None and (saved := _load_chunk(_chunk_file(chunk_dir, starts[k]), starts[k],
                                                           min(starts[k] + chunk, n))) is not None:
            parts[k] = saved
    total = sum(min(starts[k] + chunk, n) - starts[k] for k in wanted)
    done = sum(p["stop"] - p["start"] for p in parts.values())
    todo = [k for k in wanted if k not in parts]
    with tqdm(total=total, initial=done, unit="img", desc=desc, disable=not progress) as bar:
        i = 0
        while i < len(todo):
            last = i  # one pass over a run of consecutive chunks
            while last + 1 < len(todo) and todo[last + 1] == todo[last] + 1:
                last += 1
            k, scores, labels = todo[i], [], []
            for offset, images, y in split.batches(batch_size, starts[todo[i]], min(starts[todo[last]] + chunk, n)):
                scores.append(true_class_probability(teacher, images, y, prepare))
                labels.append(y.clone())
                bar.update(len(y))
                end = offset + len(y)
                if end == min(starts[k] + chunk, n):
                    parts[k] = {"start": starts[k], "stop": end, "scores": torch.cat(scores),
                                "labels": torch.cat(labels)}
                    if chunk_dir is not None:
                        torch_save(_chunk_file(chunk_dir, starts[k]), parts[k])
                    scores, labels, k = [], [], k + 1
            i = last + 1
    return parts


def read_scores(chunk_dir: Path, n: int, batch_size: int = SCORE_BATCH, chunk_batches: int = CHUNK_BATCHES
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, labels)`` of all ``n`` images from the chunk files in ``chunk_dir`` (saved by :func:`score_chunks`,
    possibly by other processes); a missing or unreadable chunk is a one-line error."""
    chunk, parts = batch_size * chunk_batches, []
    for a in chunk_starts(n, batch_size, chunk_batches):
        part = _load_chunk(_chunk_file(chunk_dir, a), a, min(a + chunk, n))
        if part is None:
            raise FastDistillError(f"the scores of train images {a}:{min(a + chunk, n)} are missing from {chunk_dir}; "
                                   "every rank must see the run folder (--output on a shared file system)")
        parts.append(part)
    return torch.cat([p["scores"] for p in parts]), torch.cat([p["labels"] for p in parts])


def score_split(teacher: nn.Module, split: Split, prepare: Callable[[torch.Tensor], torch.Tensor],
                chunk_dir: Path | None = None, batch_size: int = SCORE_BATCH, chunk_batches: int = CHUNK_BATCHES,
                progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, labels)`` of every train image in one streamed pass over ``split.batches``.

    ``scores``: :func:`true_class_probability`; ``labels``: as read (``SKIPPED`` for an unreadable file, which never
    joins a class). With ``chunk_dir`` every ``chunk_batches`` batches are saved there and a chunk already saved (and
    readable) is not scored again.
    """
    parts = score_chunks(teacher, split, prepare, chunk_dir, None, batch_size, chunk_batches, progress)
    ordered = [parts[k] for k in sorted(parts)]
    return torch.cat([p["scores"] for p in ordered]), torch.cat([p["labels"] for p in ordered])


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
