"""Evaluate a distilled set against a random real subset of the same per-class counts, under the same protocols.

    from fastdistill.eval import evaluate_distilled, format_table, write_results

    results = evaluate_distilled(record["images"], record["labels"], dataset, teacher="runs/teacher",
                                 protocols=("hard", "soft"), seeds=3, device="cuda")
    write_results(run_dir, results)          # run_dir/results.json (atomic) + the table on stdout

For every protocol and seed, one student is trained on the distilled set and one on a random real subset drawn
(per seed) from the train split with the same label at every position; both share the student initialisation and
the augmentation stream of that seed. Accuracy is test top-1 (%) after the last epoch, mean ± std (population std,
as DC) over seeds.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from fastdistill.data.base import Dataset, Split
from fastdistill.errors import FastDistillError
from fastdistill.eval.protocols import PROTOCOLS, make_protocol
from fastdistill.eval.trainer import StudentTrainer
from fastdistill.models.teacher import load_teacher
from fastdistill.utils.io import read_json, write_json
from fastdistill.utils.seed import generator

if TYPE_CHECKING:
    from fastdistill.eval.relabel import StoredLabels

RESULTS = "results.json"
# DC's protocol network for hard labels; DELT/RDED train BatchNorm ConvNets from soft labels (an instance-norm
# ConvNet-3 learns T=20 soft labels far more slowly: 33-47% vs 98.7% on digits IPC 10, see README).
DEFAULT_STUDENTS = {"hard": "convnet3", "soft": "convnet3-bn"}


def random_real_subset(train: Split, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real train images with exactly ``labels`` (position by position, hence the same per-class counts), drawn
    without replacement with ``seed``."""
    labels = labels.cpu().long()
    g = generator(seed)
    index = torch.empty_like(labels)
    for c in labels.unique().tolist():
        slots = (labels == c).nonzero().flatten()
        pool = train.class_indices(c)
        if len(slots) > len(pool):
            raise FastDistillError(f"class {c} has {len(slots)} distilled images but only {len(pool)} real training "
                                   "images; the random-real baseline needs at least as many")
        index[slots] = pool[torch.randperm(len(pool), generator=g)[: len(slots)]]
    return train.images[index], train.labels[index]


def _check_inputs(images: torch.Tensor, labels: torch.Tensor, dataset: Dataset,
                  stages: torch.Tensor | None) -> None:
    info = dataset.info
    if images.dim() != 4 or images.shape[0] == 0:
        raise FastDistillError(f"distilled images must be a non-empty [N,C,H,W] tensor, got {tuple(images.shape)}")
    if tuple(images.shape[1:]) != (info.channels, info.image_size, info.image_size):
        raise FastDistillError(f"distilled images are {tuple(images.shape[1:])} but {info.name} images are "
                               f"{(info.channels, info.image_size, info.image_size)}; evaluate on the dataset they "
                               "were distilled from")
    if labels.shape != (images.shape[0],):
        raise FastDistillError(f"need one label per image: {images.shape[0]} images, labels {tuple(labels.shape)}")
    if int(labels.min()) < 0 or int(labels.max()) >= info.num_classes:
        raise FastDistillError(f"labels must lie in [0, {info.num_classes - 1}] for {info.name}")
    if stages is not None and stages.shape != labels.shape:
        raise FastDistillError("stages must hold one stage index per image")


def _seed_list(seeds: int | Sequence[int], base_seed: int) -> list[int]:
    if isinstance(seeds, int):
        if seeds <= 0:
            raise FastDistillError(f"--seeds must be positive, got {seeds}")
        return [base_seed + i for i in range(seeds)]
    return [int(s) for s in seeds]


def _summary(runs: list[dict]) -> dict:
    def stats(values: list[float]) -> tuple[float, float]:
        mean = sum(values) / len(values)
        return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))

    mean, std = stats([r["top1"] for r in runs])
    out: dict = {"mean": mean, "std": std}
    if all("best_top1" in r for r in runs):
        out["best_mean"], out["best_std"] = stats([r["best_top1"] for r in runs])
    out["runs"] = runs
    return out


def _train_one(trainer: StudentTrainer, images: torch.Tensor, labels: torch.Tensor, stages: torch.Tensor | None,
               lrs: Sequence[float | None] | None, test: Split, eval_every: int, progress: bool, desc: str) -> dict:
    start = time.perf_counter()
    if stages is None:
        parts = [(images, labels)]
    else:
        parts = [(images[stages <= s], labels[stages <= s]) for s in stages.unique().tolist()]
    for i, (x, y) in enumerate(parts):
        name = desc if len(parts) == 1 else f"{desc} U{i + 1}/{len(parts)}"
        trainer.fit(x, y, lr=lrs[i] if lrs else None, eval_on=test if eval_every else None, eval_every=eval_every,
                    progress=progress, desc=name)
    run = {"top1": trainer.accuracy(test), "epochs": trainer.epochs_done, "steps": trainer.steps,
           "seconds": round(time.perf_counter() - start, 3)}
    if eval_every:
        run["best_top1"] = max(a for _, a in trainer.history)
        run["evaluations"] = len(trainer.history)
    return run


def _student_file(kind: str, which: str, seed: int, *shaping: object) -> str:
    """``<protocol>-<set>-seed<S>-<hash>.json``: the hash covers every other input that shapes the student."""
    digest = hashlib.sha256()
    for item in shaping:
        if isinstance(item, torch.Tensor):
            digest.update(item.detach().cpu().contiguous().numpy().tobytes())
        digest.update(json.dumps(None if isinstance(item, torch.Tensor) else item, sort_keys=True,
                                 default=str).encode())
    return f"{kind}-{which}-seed{seed}-{digest.hexdigest()[:16]}.json"


def _read_kept(path: Path) -> dict | None:
    """A kept student result, or None when absent or unreadable (that student is trained again)."""
    if not path.is_file():
        return None
    try:
        run = read_json(path)
    except FastDistillError as exc:
        print(f"warning: {exc}; training that student again", file=sys.stderr)
        return None
    return run if isinstance(run, dict) and "top1" in run else None


def evaluate_distilled(images: torch.Tensor, labels: torch.Tensor, dataset: Dataset, *,
                       teacher: nn.Module | str | Path | None = None, protocols: Sequence[str] = PROTOCOLS,
                       seeds: int | Sequence[int] = 3, base_seed: int = 0, epochs: int | dict[str, int] | None = None,
                       student: str | dict[str, str] | None = None, device: torch.device | str = "cpu",
                       stages: torch.Tensor | None = None, stage_lrs: Sequence[float | None] | None = None,
                       lr: float | None = None, track_best: int = 0, progress: bool = True,
                       log: Callable[[str], None] = print, keep: str | Path | None = None, reuse: bool = False,
                       teacher_weights: str | Path | None = None, stored_labels: StoredLabels | None = None) -> dict:
    """Train students on the distilled set and on seeded random real subsets; return a JSON-ready results dict.

    images: uint8 [N, C, H, W] (or float pixels in [0, 1]); labels: int64 [N]; dataset: the source
    :class:`~fastdistill.data.Dataset` (random subsets come from ``dataset.train``, accuracy from ``dataset.test``).
    teacher: a frozen module or a teacher folder (``fastdistill squeeze`` output); required by ``"soft"``.
    seeds: a count (``base_seed``, ``base_seed + 1``, ...) or explicit seeds. epochs / student: one value for all
    protocols or a ``{protocol: value}`` dict; defaults per protocol (:func:`~fastdistill.eval.protocols.
    default_epochs`, :data:`DEFAULT_STUDENTS`). stages: optional int [N] stage index per image for progressive
    evaluation (PDD): the student trains ``epochs`` on each cumulative union U_s = {stage <= s} in turn, optimizer
    state carried; the random subset keeps the same stage structure. stage_lrs: per-stage base LRs for the hard
    protocol on the distilled set (PDD+MTT's learned α; ``None`` entries: the protocol's); the random subset and the
    soft protocol keep the protocol's LR. lr: replaces every protocol's base LR (all students; ``stage_lrs`` entries
    still win), recorded as ``lr_override`` and in each protocol. track_best: if > 0, also evaluate the test set
    about ``track_best`` times per run and report the best (labelled ``best_*``; the headline number stays final).
    keep: a folder where every finished student's result is saved, named after everything that shapes it; with
    ``reuse`` a result found there is taken instead of training that student again (an interrupted evaluation resumes).
    stored_labels: soft labels written by ``relabel`` (:class:`~fastdistill.eval.relabel.StoredLabels`); the soft
    students replay them instead of asking ``teacher`` (refused if made for other images, seeds or settings).
    """
    protocols = tuple(protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise FastDistillError(f"unknown evaluation protocol(s) {unknown}; use {', '.join(PROTOCOLS)}")
    _check_inputs(images, labels, dataset, stages)
    if lr is not None and not lr > 0:
        raise FastDistillError(f"the student learning rate must be positive, got {lr}")
    if stage_lrs is not None and (stages is None or len(stage_lrs) != len(stages.unique())):
        raise FastDistillError("stage_lrs needs stages and one entry per stage")
    info, device = dataset.info, torch.device(device)
    teacher_name = None
    if "soft" in protocols and stored_labels is not None:
        teacher_name = stored_labels.describe()
    elif "soft" in protocols:
        if teacher is None:
            raise FastDistillError("the soft-label protocol needs a teacher: pass --teacher DIR (a `fastdistill "
                                   "squeeze` output) or evaluate with --protocols hard")
        if not isinstance(teacher, nn.Module):
            teacher_name = str(teacher)
            teacher, _ = load_teacher(teacher, info, device, teacher_weights)
        else:
            teacher_name = type(teacher).__name__
            teacher = teacher.to(device).eval().requires_grad_(False)
    seed_list = _seed_list(seeds, base_seed)
    labels = labels.cpu().long()
    stages = None if stages is None else stages.cpu().long()
    test = Split(dataset.test.images.to(device), dataset.test.labels.to(device))
    counts = torch.bincount(labels, minlength=info.num_classes).tolist()
    results: dict = {"dataset": info.name, "num_images": int(labels.numel()), "per_class": counts,
                     "ipc": labels.numel() / info.num_classes, "seeds": seed_list, "device": str(device),
                     "teacher": teacher_name, "stages": None if stages is None else len(stages.unique()),
                     "stage_lrs": None if stage_lrs is None else list(stage_lrs), "lr_override": lr,
                     "metric": "test top-1 % after the last epoch; mean ± population std over seeds",
                     "protocols": {}}
    for kind in protocols:
        ep = epochs.get(kind) if isinstance(epochs, dict) else epochs
        arch = student.get(kind, DEFAULT_STUDENTS[kind]) if isinstance(student, dict) else student
        arch = arch or DEFAULT_STUDENTS[kind]
        proto = make_protocol(kind, info, int(labels.numel()), ep, student=arch,
                              **({} if lr is None else {"lr": lr}))
        eval_every = max(1, proto.epochs // track_best) if track_best > 0 else 0
        stored = stored_labels if kind == "soft" else None
        if stored is not None:
            stored.check(images, stages, proto, seed_list)
        runs: dict[str, list[dict]] = {"distilled": [], "random_real": []}
        for seed in seed_list:
            real_x, real_y = random_real_subset(dataset.train, labels, seed)
            for which, (x, y) in (("distilled", (images, labels)), ("random_real", (real_x, real_y))):
                lrs = stage_lrs if kind == "hard" and which == "distilled" else None
                kept = None if keep is None else Path(keep) / _student_file(
                    kind, which, seed, proto.to_dict(), arch, lrs, teacher_name, eval_every, images, labels, stages)
                if reuse and kept is not None and (run := _read_kept(kept)) is not None:
                    runs[which].append({"seed": seed, **run})
                    continue
                trainer = StudentTrainer(info, proto, student=arch, teacher=teacher if kind == "soft" else None,
                                         seed=seed, device=device,
                                         stored=None if stored is None else stored.stream(which, seed, x, device))
                run = _train_one(trainer, x, y, stages, lrs, test, eval_every, progress, f"{kind} {which} seed {seed}")
                if kept is not None:
                    write_json(kept, run)
                runs[which].append({"seed": seed, **run})
                if progress:
                    log(f"  {kind:<4} {which:<11} seed {seed}: top-1 {run['top1']:6.2f}%  "
                        f"({run['epochs']} epochs, {run['steps']} steps, {run['seconds']:.1f}s)")
        entry = {"protocol": proto.to_dict(), "student": arch, "distilled": _summary(runs["distilled"]),
                 "random_real": _summary(runs["random_real"])}
        entry["delta"] = entry["distilled"]["mean"] - entry["random_real"]["mean"]
        results["protocols"][kind] = entry
    return results


def format_table(results: dict) -> str:
    """A short text table: protocol | student | epochs | distilled | random real | delta."""
    rows = [("protocol", "student", "epochs", "distilled", "random real", "delta")]
    for kind, e in results["protocols"].items():
        d, r = e["distilled"], e["random_real"]
        rows.append((kind, e["student"], str(e["protocol"]["epochs"]), f"{d['mean']:.2f} ± {d['std']:.2f}",
                     f"{r['mean']:.2f} ± {r['std']:.2f}", f"{e['delta']:+.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n = len(results["seeds"])
    lines.append(f"test top-1 % on {results['dataset']} ({results['num_images']} images), final epoch, "
                 f"mean ± std over {n} seed{'s' if n > 1 else ''}")
    for kind, e in results["protocols"].items():
        d, r = e["distilled"], e["random_real"]
        if "best_mean" in d and "best_mean" in r:
            k = d["runs"][0]["evaluations"]
            lines.append(f"{kind}: best of {k} evaluations (optimistic): distilled {d['best_mean']:.2f} ± "
                         f"{d['best_std']:.2f}, random real {r['best_mean']:.2f} ± {r['best_std']:.2f}")
    for kind, reason in results.get("skipped", {}).items():
        lines.append(f"{kind}: skipped ({reason})")
    return "\n".join(lines)


def write_results(run_dir: str | Path, results: dict, echo: bool = True) -> Path:
    """Write ``run_dir/results.json`` atomically; print the table when ``echo``. Returns the file path."""
    path = Path(run_dir) / RESULTS
    write_json(path, results)
    if echo:
        print(format_table(results))
    return path
