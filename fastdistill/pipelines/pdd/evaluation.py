"""Evaluation of a progressive distilled set with the hard-label harness, honest about compute.

Rows (mean ± std of test top-1 over seeds, each with the epochs and SGD steps it used):
- ``progressive``: one student trained on U_1, then U_2, ..., U_P, ``E`` epochs each, optimizer state carried, LR x0.1
  at half of every stage, stage i at its own LR (MTT: the learned α; otherwise the protocol's) — PDD's protocol;
- ``union, equal epochs``: the same student trained on U_P alone for P·E epochs;
- ``union, equal steps``: U_P alone for as many epochs as give the progressive run's number of SGD steps;
- ``union, E epochs``: U_P alone with the standard protocol (what a one-stage method gets);
- ``random real``: a random real subset with U_P's per-class counts, E epochs (and P·E epochs when P > 1).
With P = 1 only the distilled set and the random real subset are trained (E epochs).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

import torch

from fastdistill.data.base import Dataset
from fastdistill.eval.protocols import make_protocol
from fastdistill.eval.trainer import StudentTrainer
from fastdistill.utils.seed import generator


@dataclass
class Row:
    name: str
    epochs: int
    steps: int
    accuracies: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": self.mean, "std": self.std}


def random_real_subset(dataset: Dataset, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random real training images with the same per-class counts as ``labels`` (seeded)."""
    g = generator(seed)
    counts = torch.bincount(labels, minlength=dataset.info.num_classes).tolist()
    idx = [dataset.train.class_indices(c)[torch.randperm(len(dataset.train.class_indices(c)), generator=g)[:n]]
           for c, n in enumerate(counts) if n]
    order = torch.cat(idx)
    return dataset.train.images[order], dataset.train.labels[order]


def train_progressive(trainer: StudentTrainer, images: torch.Tensor, labels: torch.Tensor, stage: torch.Tensor,
                      lrs: list[float | None], epochs: int, progress: bool = False) -> None:
    """PDD's schedule: ``epochs`` on U_1 = stage 1, then on U_2 = stages 1-2, ...; the optimizer state carries over."""
    for i in range(1, int(stage.max()) + 1):
        mask = stage <= i
        trainer.fit(images[mask], labels[mask], epochs=epochs, lr=lrs[i - 1], progress=progress,
                    desc=f"eval stage {i}")


def evaluate_progressive(record: dict, dataset: Dataset, *, seeds: list[int], epochs: int | None = None,
                         arch: str = "convnet3", device: torch.device | str = "cpu",
                         progress: bool = False) -> list[Row]:
    """Train students on the distilled ``record`` (``images``, ``labels``, ``stage``, ``eval_lr``) as listed above."""
    info = dataset.info
    images, labels = record["images"], record["labels"]
    stage = record.get("stage", torch.ones_like(labels))
    stages = int(stage.max())
    lrs = list(record.get("eval_lr") or [None] * stages)
    protocol = make_protocol("hard", info, images.shape[0], epochs=epochs)
    e = protocol.epochs

    def trainer(seed: int) -> StudentTrainer:
        return StudentTrainer(info, protocol, student=arch, seed=seed, device=device)

    def steps_per_epoch(n: int) -> int:
        return math.ceil(n / min(protocol.batch_size, n))

    rows: dict[str, Row] = {}

    def add(name: str, epochs_used: int, steps: int, acc: float) -> None:
        rows.setdefault(name, Row(name, epochs_used, steps)).accuracies.append(acc)

    for seed in seeds:
        t = trainer(seed)
        train_progressive(t, images, labels, stage, lrs, e, progress=progress)
        name = f"distilled, {e} ep" if stages == 1 else f"progressive, {stages}x{e} ep"
        add(name, t.epochs_done, t.steps, t.accuracy(dataset.test))
        if stages > 1:
            equal_steps = math.ceil(t.steps / steps_per_epoch(len(labels)))
            budgets = [(f"union, equal epochs ({stages * e} ep)", stages * e),
                       (f"union, equal steps ({equal_steps} ep)", equal_steps), (f"union, {e} ep", e)]
            done: dict[int, tuple[int, float]] = {}  # epochs -> (steps, accuracy): equal budgets train once
            for name, ep in budgets:
                if ep not in done:
                    u = trainer(seed)
                    u.fit(images, labels, epochs=ep, lr=lrs[-1], progress=progress, desc=f"eval seed {seed} union")
                    done[ep] = (u.steps, u.accuracy(dataset.test))
                add(name, ep, *done[ep])
        real_x, real_y = random_real_subset(dataset, labels, seed)
        for ep in sorted({e, stages * e}):
            r = trainer(seed)
            r.fit(real_x, real_y, epochs=ep, progress=progress, desc=f"eval seed {seed} random real")
            add(f"random real, {ep} ep", r.epochs_done, r.steps, r.accuracy(dataset.test))
    return list(rows.values())


def format_rows(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'student trained on':<{width}}  {'top-1 %':>14}  {'epochs':>6}  {'steps':>6}"]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {r.mean:>7.2f} ± {r.std:<4.2f}  {r.epochs:>6}  {r.steps:>6}")
    return "\n".join(lines)
