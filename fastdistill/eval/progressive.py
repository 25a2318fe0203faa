"""Evaluation of a progressive distilled set with the harness (hard labels), honest about compute.

Every row trains students on the distilled set and on a seeded random real subset with the same labels, under the
same budget (:func:`fastdistill.eval.evaluate_distilled`):
- ``progressive``: U_1, then U_2, ..., U_P, ``E`` epochs each, optimizer state carried, LR x0.1 at half of every
  stage, stage i at its own LR (MTT: the learned α; otherwise the protocol's) — PDD's protocol; the random subset
  gets the same stage structure;
- ``union, equal epochs``: U_P alone for P·E epochs;
- ``union, equal steps``: U_P alone for as many epochs as give the progressive run's SGD steps;
- ``union, E ep``: U_P alone with the standard protocol (what a one-stage method gets).
Budgets that coincide (small sets take one step per epoch) are trained once. With P = 1 only the standard row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastdistill.data.base import Dataset
from fastdistill.eval.harness import evaluate_distilled
from fastdistill.eval.protocols import make_protocol


@dataclass
class Row:
    name: str
    epochs: int
    steps: int
    distilled: tuple[float, float]
    random_real: tuple[float, float]

    def to_dict(self) -> dict:
        return {"name": self.name, "epochs": self.epochs, "steps": self.steps,
                "distilled": {"mean": self.distilled[0], "std": self.distilled[1]},
                "random_real": {"mean": self.random_real[0], "std": self.random_real[1]}}


def evaluate_progressive(record: dict, dataset: Dataset, *, seeds: int = 3, epochs: int | None = None,
                         arch: str = "convnet3", device: torch.device | str = "cpu", lr: float | None = None,
                         progress: bool = False, all_ranks: bool = False) -> tuple[list[Row], dict]:
    """The rows above for ``record`` (``images``, ``labels``, ``stage``, ``eval_lr``); also the harness outputs.

    ``lr`` replaces the protocol's student LR (``eval_lr`` entries still win), and ``all_ranks`` deals the students to
    the torchrun ranks, as in ``evaluate_distilled``."""
    images, labels = record["images"], record["labels"]
    stage = record.get("stage", torch.ones_like(labels))
    stages = int(stage.max())
    lrs = list(record.get("eval_lr") or [None] * stages)
    protocol = make_protocol("hard", dataset.info, images.shape[0], epochs=epochs)
    e = protocol.epochs
    raw: dict[str, dict] = {}

    def run(name: str, ep: int, stage_ids: torch.Tensor, stage_lrs: list[float | None]) -> Row:
        key = f"{ep}/{stage_ids.max()}"
        if key not in raw:
            raw[key] = evaluate_distilled(images, labels, dataset, protocols=("hard",), seeds=seeds, epochs=ep,
                                          student=arch, device=device, stages=stage_ids, stage_lrs=stage_lrs,
                                          lr=lr, progress=progress, log=lambda _: None, diversity=False,
                                          all_ranks=all_ranks)
        hard = raw[key]["protocols"]["hard"]
        d, r = hard["distilled"], hard["random_real"]
        return Row(name, d["runs"][0]["epochs"], d["runs"][0]["steps"], (d["mean"], d["std"]), (r["mean"], r["std"]))

    one_stage = torch.ones_like(labels)
    if stages == 1:
        return [run(f"distilled, {e} ep", e, one_stage, lrs[-1:])], raw
    rows = [run(f"progressive, {stages}x{e} ep", e, stage, lrs)]
    steps_per_epoch = math.ceil(len(labels) / min(protocol.batch_size, len(labels)))
    equal_steps = math.ceil(rows[0].steps / steps_per_epoch)
    rows.append(run(f"union, equal epochs ({stages * e} ep)", stages * e, one_stage, lrs[-1:]))
    rows.append(run(f"union, equal steps ({equal_steps} ep)", equal_steps, one_stage, lrs[-1:]))
    rows.append(run(f"union, {e} ep", e, one_stage, lrs[-1:]))
    return rows, raw


def format_rows(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    head = f"{'distilled %':>13}  {'random real %':>13}  {'epochs':>6}  {'steps':>6}"
    lines = [f"{'students trained on':<{width}}  {head}"]
    for r in rows:
        d, q = r.distilled, r.random_real
        lines.append(f"{r.name:<{width}}  {d[0]:>6.2f} ± {d[1]:<4.2f}  {q[0]:>6.2f} ± {q[1]:<4.2f}  {r.epochs:>6}  "
                     f"{r.steps:>6}")
    return "\n".join(lines)
