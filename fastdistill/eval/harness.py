"""Evaluate a distilled set against a random real subset of the same per-class counts, under the same protocols.

    from fastdistill.eval import evaluate_distilled, format_table, write_results

    results = evaluate_distilled(record["images"], record["labels"], dataset, teacher="runs/teacher",
                                 protocols=("hard", "soft"), seeds=3, device="cuda")
    write_results(run_dir, results)          # run_dir/results.json (atomic) + the table on stdout

For every protocol and seed, one student is trained on the distilled set and one on a random real subset drawn
(per seed) from the train split with the same label at every position; both share the student initialisation and
the augmentation stream of that seed. Accuracy is test top-1 (%) after the last epoch, mean ± std (population std,
as DC) over seeds. Every run also records ``per_class_top1`` (test top-1 % per class, from the same final
evaluation) and ``curve``: ``loss`` (mean training loss of every epoch) and, when ``track_best`` evaluates during
training, ``test_top1`` ([epoch, %] pairs) — what ``fastdistill report`` plots.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from fastdistill.data.base import Dataset, Split, to_uint8
from fastdistill.errors import FastDistillError
from fastdistill.eval.batched import BatchedStudents, stackable
from fastdistill.eval.ddranking import FULL_DATA_MODES, full_data_accuracy, score_row
from fastdistill.eval.ddranking import REFERENCE as DD_RANKING_REFERENCE
from fastdistill.eval.diversity import FeatureModel, diversity_results, load_feature_model
from fastdistill.eval.protocols import NAMED_PROTOCOLS, PROTOCOLS, make_protocol, named_protocol, unknown_protocol
from fastdistill.eval.students import SOURCE as REFERENCE_LR_SOURCE
from fastdistill.eval.students import reference_lr
from fastdistill.eval.trainer import StudentTrainer
from fastdistill.methods.realdata import batch_source
from fastdistill.models.teacher import load_teacher
from fastdistill.utils import distributed
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
        pool = (train.labels == c).nonzero().flatten()
        if len(slots) > len(pool):
            raise FastDistillError(f"class {c} has {len(slots)} distilled images but only {len(pool)} real training "
                                   "images; the random-real baseline needs at least as many")
        index[slots] = pool[torch.randperm(len(pool), generator=g)[: len(slots)]]
    return train.take(index), train.labels[index]


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
    if all("final_top1" in r for r in runs):
        out["final_mean"], out["final_std"] = stats([r["final_top1"] for r in runs])
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
    return _result(trainer, test, eval_every, time.perf_counter() - start)


def _train_batched(trainers: list[StudentTrainer], sets: list[tuple[torch.Tensor, torch.Tensor]], test: Split,
                   eval_every: int, progress: bool, desc: str) -> list[dict]:
    """:func:`_train_one` for several one-shot students at once (:class:`BatchedStudents`); each result records
    ``batched`` (how many trained together) and an equal share of the wall time."""
    start = time.perf_counter()
    BatchedStudents(trainers).fit(sets, eval_on=test if eval_every else None, eval_every=eval_every,
                                  progress=progress, desc=desc)
    share = (time.perf_counter() - start) / len(trainers)
    return [{**_result(t, test, eval_every, share), "batched": len(trainers)} for t in trainers]


def _result(trainer: StudentTrainer, test: Split, eval_every: int, seconds: float) -> dict:
    top1, per_class = trainer.class_accuracy(test)
    run = {"top1": top1, "epochs": trainer.epochs_done, "steps": trainer.steps, "seconds": round(seconds, 3),
           "per_class_top1": [None if a is None else round(a, 4) for a in per_class],
           "curve": {"loss": [float(f"{v:.6g}") for v in trainer.losses]}}
    if eval_every:
        run["best_top1"] = max(a for _, a in trainer.history)
        run["evaluations"] = len(trainer.history)
        run["curve"]["test_top1"] = [[e, a] for e, a in trainer.history]
        if trainer.protocol.report == "best":  # the named protocol reports the best; the final epoch's is kept
            run["final_top1"], run["top1"] = top1, run["best_top1"]
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


class _PlainTrainer(StudentTrainer):
    """A student trained without any augmentation (ARS's "without augmentation" runs)."""

    def epoch_batches(self, x: torch.Tensor, y: torch.Tensor | None, batches: int
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(x.shape[0], generator=self.generator, device=self.device)
        for idx in torch.tensor_split(order, batches):
            if self.protocol.kind == "hard":
                yield x[idx], y[idx]
            else:
                with torch.no_grad():
                    logits = self.teacher(x[idx])
                yield x[idx], logits  # outside no_grad: the student trains on it


def _student_lr(kind: str, arch: str, lr: float | None) -> tuple[float | None, str]:
    """The base LR override for ``arch`` under ``kind`` and where it comes from."""
    if lr is not None:
        return lr, "--lr"
    ref = reference_lr(kind, arch)
    return (ref, REFERENCE_LR_SOURCE) if ref is not None else (None, "protocol default")


def _pairs(protocols: tuple[str, ...], student: str | dict[str, str] | None,
           students: Sequence[str] | None) -> list[tuple[str, str]]:
    """(protocol, student) pairs in table order: every student under every protocol, or one student per protocol."""
    if students:
        return [(kind, arch) for kind in protocols for arch in students]
    out = []
    for kind in protocols:
        arch = student.get(kind, DEFAULT_STUDENTS[kind]) if isinstance(student, dict) else student
        out.append((kind, arch or DEFAULT_STUDENTS[kind]))
    return out


def _feature_model(feature_model: str | nn.Module | None, teacher: nn.Module | None, teacher_name: str | None,
                   info, device: torch.device, weights: str | Path | None) -> FeatureModel | None:
    if feature_model is not None:
        return load_feature_model(feature_model, info, device, None if isinstance(feature_model, nn.Module)
                                  else str(weights) if weights else None)
    if teacher is not None:
        return load_feature_model(teacher, info, device, name=f"teacher {teacher_name}")
    return None


def evaluate_distilled(images: torch.Tensor, labels: torch.Tensor, dataset: Dataset, *,
                       teacher: nn.Module | str | Path | None = None, protocols: Sequence[str] = PROTOCOLS,
                       seeds: int | Sequence[int] = 3, base_seed: int = 0, epochs: int | dict[str, int] | None = None,
                       student: str | dict[str, str] | None = None, students: Sequence[str] | None = None,
                       device: torch.device | str = "cpu", stages: torch.Tensor | None = None,
                       stage_lrs: Sequence[float | None] | None = None, lr: float | None = None, track_best: int = 0,
                       progress: bool = True, log: Callable[[str], None] = print, keep: str | Path | None = None,
                       reuse: bool = False, teacher_weights: str | Path | None = None,
                       teacher_format: str | None = None, diversity: bool = True,
                       feature_model: str | nn.Module | None = None, feature_weights: str | Path | None = None,
                       full_data: str = "skip", full_data_epochs: int | None = None,
                       cache_dir: str | Path | None = None, ars: bool = False,
                       stored_labels: StoredLabels | None = None, all_ranks: bool = False,
                       protocol: str | None = None, batch_students: bool | None = None,
                       full_data_top1: dict[str, float] | None = None) -> dict:
    """Train students on the distilled set and on seeded random real subsets; return a JSON-ready results dict.

    images: uint8 [N, C, H, W] (or float pixels in [0, 1]); labels: int64 [N]; dataset: the source
    :class:`~fastdistill.data.Dataset` (random subsets come from ``dataset.train``, accuracy from ``dataset.test``).
    teacher: a frozen module or a teacher folder (``fastdistill squeeze`` output), ``torchvision:NAME`` or a reference
    checkpoint (``teacher_weights`` / ``teacher_format``: see :func:`~fastdistill.models.teacher.load_teacher`);
    required by ``"soft"``.
    seeds: a count (``base_seed``, ``base_seed + 1``, ...) or explicit seeds. epochs / student: one value for all
    protocols or a ``{protocol: value}`` dict; defaults per protocol (:func:`~fastdistill.eval.protocols.
    default_epochs`, :data:`DEFAULT_STUDENTS`). students: several architectures, each evaluated under every protocol
    (cross-architecture table; replaces ``student``). Unless ``lr`` is given, a student takes the reference's rate for
    its architecture (:mod:`fastdistill.eval.students`). stages: optional int [N] stage index per image for
    progressive evaluation (PDD): the student trains ``epochs`` on each cumulative union U_s = {stage <= s} in turn,
    optimizer state carried; the random subset keeps the same stage structure. stage_lrs: per-stage base LRs for the
    hard protocol on the distilled set (PDD+MTT's learned α; ``None`` entries: the protocol's); the random subset and
    the soft protocol keep the protocol's LR. lr: replaces every protocol's base LR (all students; ``stage_lrs``
    entries still win), recorded as ``lr_override`` and in each protocol. track_best: if > 0, also evaluate the test
    set about ``track_best`` times per run and report the best (labelled ``best_*``; the headline number stays
    final). keep: a folder where every finished student's result is saved, named after everything that shapes it;
    with ``reuse`` a result found there is taken instead of training that student again (an interrupted evaluation
    resumes).

    diversity: score the distilled set and the random subsets with :func:`~fastdistill.eval.diversity.
    diversity_results` on the features of ``feature_model`` (default: the teacher; skipped without either).
    full_data (``train`` | ``cached`` | ``skip``), full_data_epochs, cache_dir: the full-data hard-label accuracy
    of DD-Ranking's HLR (:func:`~fastdistill.eval.ddranking.full_data_accuracy`); full_data_top1: known full-data
    accuracies (%) per architecture (a paper's, an earlier run's) used instead, recorded as given. ars: also train
    every student without augmentation, for DD-Ranking's ARS.
    stored_labels: soft labels written by ``relabel`` (:class:`~fastdistill.eval.relabel.StoredLabels`); the soft
    students replay them instead of asking ``teacher`` (refused if made for other images, seeds or settings).
    all_ranks: every torchrun rank calls this; the students (and the full-data and diversity measurements) are dealt
    to the ranks in order and their results gathered, so every rank returns the table one process computes (each
    student is seeded by its seed alone).
    protocol: a named protocol (:data:`~fastdistill.eval.protocols.NAMED_PROTOCOLS`: ``delt``, ``sre2l``, ...)
    instead of ``protocols``: its label kind with its recipe (augmentation, epochs unless ``epochs``, optimizer,
    batch rule, schedule, best-of or final); ``results["protocol_name"]`` and every entry's ``protocol`` record it.
    batch_students: train the one-shot ConvNet students of each (protocol, architecture) together as one stacked
    network (:mod:`fastdistill.eval.batched`; equal to one by one up to float rounding); None: on CUDA only.
    """
    if protocol is not None:
        if protocol not in NAMED_PROTOCOLS:
            raise unknown_protocol(protocol)
        protocols = (NAMED_PROTOCOLS[protocol],)
    protocols = tuple(protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise FastDistillError(f"unknown evaluation protocol(s) {unknown}; use {', '.join(PROTOCOLS)}")
    if full_data not in FULL_DATA_MODES:
        raise FastDistillError(f"full_data must be one of {', '.join(FULL_DATA_MODES)}, got {full_data!r}")
    _check_inputs(images, labels, dataset, stages)
    if lr is not None and not lr > 0:
        raise FastDistillError(f"the student learning rate must be positive, got {lr}")
    if stage_lrs is not None and (stages is None or len(stage_lrs) != len(stages.unique())):
        raise FastDistillError("stage_lrs needs stages and one entry per stage")
    if students is not None and (not students or len(set(students)) != len(students)):
        raise FastDistillError(f"students must be distinct architecture names, got {list(students)}")
    info, device = dataset.info, torch.device(device)
    teacher_name = None
    if "soft" in protocols and teacher is None and stored_labels is None:
        raise FastDistillError("the soft-label protocol needs a teacher: pass --teacher DIR (a `fastdistill "
                               "squeeze` output) or evaluate with --protocols hard")
    if teacher is not None and not isinstance(teacher, nn.Module):
        teacher_name = str(teacher)
        teacher, _ = load_teacher(teacher, info, device, teacher_weights, teacher_format)
    elif teacher is not None:
        teacher_name = type(teacher).__name__
        teacher = teacher.to(device).eval().requires_grad_(False)
    if "soft" in protocols and stored_labels is not None:
        teacher_name = stored_labels.describe()
    extractor = _feature_model(feature_model, teacher, teacher_name, info, device, feature_weights) if diversity \
        else None
    seed_list = _seed_list(seeds, base_seed)
    labels = labels.cpu().long()
    stages = None if stages is None else stages.cpu().long()
    test = dataset.test.decoded()  # evaluated after every student: random access (a memory map when streamed)
    test = Split(batch_source(test.images, device), test.labels)
    counts = torch.bincount(labels, minlength=info.num_classes).tolist()
    results: dict = {"dataset": info.name, "num_images": int(labels.numel()), "per_class": counts,
                     "ipc": labels.numel() / info.num_classes, "seeds": seed_list, "device": str(device),
                     "teacher": teacher_name, "stages": None if stages is None else len(stages.unique()),
                     "stage_lrs": None if stage_lrs is None else list(stage_lrs), "lr_override": lr,
                     "metric": "test top-1 % after the last epoch; mean ± population std over seeds",
                     "protocols": {}, "students": {}}
    subsets = {seed: random_real_subset(dataset.train, labels, seed) for seed in seed_list}
    w = distributed.world() if all_ranks else distributed.World()
    batching = device.type == "cuda" if batch_students is None else batch_students
    # batched students train one set at once at the protocol's rate: no stages beyond one, no per-stage rates
    one_set = (stages is None or stages.unique().numel() == 1) and all(v is None for v in stage_lrs or ())
    results["batch_students"] = batching
    dealt = itertools.count()  # the n-th unit of work (a student, a measurement) goes to rank n % size

    def once(fn: Callable[[], object]) -> object:
        """``fn()`` computed by the rank this unit of work is dealt to, returned on every rank."""
        owner = next(dealt) % w.size
        if w.size == 1:
            return fn()
        return distributed.gather(fn() if owner == w.rank else None)[owner]

    def finish(done: dict, seed: int, which: str, kept: Path | None, name: str, run: dict) -> None:
        if kept is not None:
            write_json(kept, run)
        done[seed, which] = run
        if progress:
            log(f"  {name}: top-1 {run['top1']:6.2f}%  ({run['epochs']} epochs, {run['steps']} steps, "
                f"{run['seconds']:.1f}s{' batched' if run.get('batched') else ''})")

    def train_pair(kind: str, arch: str, proto, sets: tuple[str, ...] = ("distilled", "random_real"),
                   plain: bool = False) -> dict[str, dict]:
        eval_every = proto.eval_every if proto.report == "best" else \
            max(1, proto.epochs // track_best) if track_best > 0 else 0
        stored = stored_labels if kind == "soft" and not plain else None
        if stored is not None and proto.name:
            raise FastDistillError(f"stored soft labels replay the soft protocol's augmentation, not protocol "
                                   f"{proto.name!r}'s; evaluate --protocol {proto.name} with live labels "
                                   "(--soft-labels live)")
        if stored is not None:
            stored.check(images, stages, proto, seed_list)
        done: dict[tuple[int, str], dict] = {}
        tag = f"{kind}-noaug" if plain else kind

        def label(which: str, seed: object) -> str:
            return f"{kind}{' no-aug' if plain else ''} {arch} {which} seed {seed}"

        # batched: the pair's students are one unit of work (one rank), so the stacks do not depend on the world size
        batched = batching and one_set and stackable(arch, info)
        mine = next(dealt) % w.size == w.rank if batched else True
        pending: list[tuple[int, str, StudentTrainer, torch.Tensor, torch.Tensor, Path | None]] = []
        for seed in seed_list:
            for which in sets:
                if not (mine if batched else next(dealt) % w.size == w.rank):
                    continue  # another rank's student
                x, y = (images, labels) if which == "distilled" else subsets[seed]
                lrs = stage_lrs if kind == "hard" and which == "distilled" else None
                kept = None if keep is None else Path(keep) / _student_file(
                    tag, which, seed, proto.to_dict(), arch, lrs, teacher_name, eval_every, images, labels, stages)
                if reuse and kept is not None and (run := _read_kept(kept)) is not None:
                    done[seed, which] = run
                    continue
                trainer = (_PlainTrainer if plain else StudentTrainer)(
                    info, proto, student=arch, teacher=teacher if kind == "soft" and stored is None else None,
                    seed=seed, device=device, stored=None if stored is None else stored.stream(which, seed, x, device))
                if batched:
                    pending.append((seed, which, trainer, x, y, kept))
                else:
                    run = _train_one(trainer, x, y, stages, lrs, test, eval_every, progress, label(which, seed))
                    finish(done, seed, which, kept, label(which, seed), run)
        if len(pending) > 1:
            runs = _train_batched([p[2] for p in pending], [(p[3], p[4]) for p in pending], test, eval_every,
                                  progress, f"{kind}{' no-aug' if plain else ''} {arch}: {len(pending)} batched")
        else:
            runs = [_train_one(p[2], p[3], p[4], None, None, test, eval_every, progress, label(p[1], p[0]))
                    for p in pending]
        for (seed, which, _, _, _, kept), run in zip(pending, runs, strict=True):
            finish(done, seed, which, kept, label(which, seed), run)
        if w.size > 1:
            for share in distributed.gather(done):
                done.update(share)
        return {which: _summary([{"seed": seed, **done[seed, which]} for seed in seed_list]) for which in sets}

    def protocol_for(kind: str, arch: str):
        ep = epochs.get(kind) if isinstance(epochs, dict) else epochs
        base_lr, source = _student_lr(kind, arch, lr)
        extra = {} if base_lr is None else {"lr": base_lr}
        if protocol is not None and NAMED_PROTOCOLS[protocol] == kind:
            return named_protocol(protocol, info, int(labels.numel()), ep, student=arch, **extra), source
        return make_protocol(kind, info, int(labels.numel()), ep, student=arch, **extra), source

    for kind, arch in _pairs(protocols, student, students):
        proto, lr_source = protocol_for(kind, arch)
        entry = {"protocol": proto.to_dict(), "student": arch, "lr_source": lr_source, **train_pair(kind, arch, proto)}
        entry["delta"] = entry["distilled"]["mean"] - entry["random_real"]["mean"]
        if ars:
            plain = train_pair(kind, arch, proto, plain=True)
            entry["no_augmentation"] = {**plain, "delta": plain["distilled"]["mean"] - plain["random_real"]["mean"]}
        results["protocols"].setdefault(kind, entry)
        results["students"].setdefault(arch, {})[kind] = entry
        if protocol is not None:
            results["protocol_name"], results["reported"] = protocol, proto.reported()
            results["metric"] = (f"test top-1 %, {proto.reported()} (protocol {protocol}); mean ± population std "
                                 "over seeds")
    results["ddranking"] = _ddranking(results, dataset, protocol_for, train_pair, full_data, full_data_epochs,
                                      cache_dir, device, progress, log, once, full_data_top1 or {})
    if extractor is not None:
        results["diversity"] = once(lambda: measure_diversity(images, labels, dataset, extractor, seed_list))
    elif diversity:
        results.setdefault("skipped", {})["diversity"] = NO_FEATURE_MODEL
    return results


NO_FEATURE_MODEL = "no feature model (pass --feature-model: a teacher folder, torchvision:NAME or pixels)"


def measure_diversity(images: torch.Tensor, labels: torch.Tensor, dataset: Dataset, extractor: FeatureModel,
                      seeds: Sequence[int]) -> dict:
    """The ``diversity`` entry of results.json: ``images`` and the random real subsets of ``seeds`` (the ones the
    evaluation trains its baseline students on) scored on ``extractor``'s features, against the test split."""
    if images.dtype != torch.uint8:  # float pixels in [0, 1]: the uint8 images they would be saved as
        images = to_uint8(images)
    subsets = [(seed, *random_real_subset(dataset.train, labels.cpu().long(), seed)) for seed in seeds]
    return diversity_results(extractor, images.cpu(), labels.cpu().long(), subsets,
                             (dataset.test.decoded().images, dataset.test.labels))


def _ddranking(results: dict, dataset: Dataset, protocol_for: Callable, train_pair: Callable, full_data: str,
               full_data_epochs: int | None, cache_dir: str | Path | None, device: torch.device, progress: bool,
               log: Callable[[str], None], once: Callable[[Callable[[], dict]], dict],
               given: dict[str, float]) -> dict:
    """DD-Ranking's scores of every (student, protocol) entry (``scores``), the headline row's at the top level (the
    first student under the soft protocol if evaluated, else the first row); a student evaluated only with soft labels
    gets its hard-label accuracy on the distilled set trained here when the full-data accuracy is available.
    ``given``: full-data accuracies (%) per architecture that replace training or the cache."""
    full: dict[str, dict] = {}
    rows = []
    for arch, entries in results["students"].items():
        hard = entries.get("hard")
        if arch in given:
            full[arch] = {"top1": float(given[arch]), "student": arch, "source": "given (--full-data-accuracy)"}
        elif full_data != "skip":
            proto, _ = protocol_for("hard", arch)
            proto = dataclasses.replace(proto, epochs=full_data_epochs or proto.epochs)
            full[arch] = once(functools.partial(full_data_accuracy, dataset, arch, proto, mode=full_data,
                                                cache_dir=cache_dir, device=device, progress=progress, log=log))
        if hard is None and arch in full and full[arch]["top1"] is not None:
            proto, _ = protocol_for("hard", arch)
            hard = {"protocol": proto.to_dict(), "for_hlr_only": True,
                    **train_pair("hard", arch, proto, sets=("distilled",))}
            entries["soft"]["hard_labels_for_hlr"] = hard
        for kind, entry in entries.items():
            rows.append(score_row(arch, kind, entry, hard, full.get(arch), entry.get("no_augmentation")))
    soft = [r for r in rows if r["protocol"] == "soft"]
    headline = {k: v for k, v in (soft or rows)[0].items() if k != "per_seed"} if rows else {}
    return {**headline, "w": 0.5, "gamma": 0.5, "reference": DD_RANKING_REFERENCE,
            "units": "hlr, ior as fractions (accuracy / 100), lrs and ars in [0, 1]; accuracies in %",
            "full_data": full, "scores": rows}


def _entries(results: dict) -> list[tuple[str, dict]]:
    """(protocol, entry) rows in table order: per protocol, every student (older results: ``protocols`` only)."""
    if "students" not in results:
        return list(results["protocols"].items())
    kinds = list(dict.fromkeys(k for entries in results["students"].values() for k in entries))
    return [(kind, entries[kind]) for kind in kinds for entries in results["students"].values() if kind in entries]


def _ms(summary: dict, digits: int = 3) -> str:
    return "-" if summary.get("mean") is None else f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"


def diversity_lines(div: dict) -> list[str]:
    names = (("intra_class_cosine", "intra-class cosine (lower = more diverse)"),
             ("mgd_diversity", "MGD³ diversity (1 - max cosine)"), ("representativeness", "MGD³ representativeness"))
    width = max(len(label) for _, label in names)
    lines = [f"diversity on {div['features']} of {div['feature_model']}, mean ± std over classes:"]
    for key, label in names:
        lines.append(f"  {label:<{width}}  distilled {_ms(div['distilled'][key])}  random real "
                     f"{_ms(div['random_real'][key])}")
    return lines


def _ddranking_lines(dd: dict) -> list[str]:
    lines = [f"DD-Ranking (w = {dd['w']}, γ = {dd['gamma']}; HLR, IOR as fractions), mean over seeds:"]
    width = max(len(f"{r['protocol']} {r['student']}") for r in dd["scores"])
    for r in dd["scores"]:
        cells = "  ".join(f"{name.upper()} {'-' if r[name] is None else format(r[name], fmt)}"
                          for name, fmt in (("hlr", "+.3f"), ("ior", "+.3f"), ("lrs", ".3f"), ("ars", ".3f")))
        lines.append(f"  {r['protocol'] + ' ' + r['student']:<{width}}  {cells}")
    full = dd.get("full_data", {})
    if full:
        lines.append("  full train set, hard labels: " + ", ".join(
            f"{arch} {'-' if f['top1'] is None else format(f['top1'], '.2f') + '%'}" for arch, f in full.items()))
        missing = [f["source"] for f in full.values() if f["top1"] is None]
        if missing:
            lines.append(f"  ({missing[0]})")
    return lines


def format_table(results: dict) -> str:
    """A short text table (protocol | student | epochs | lr | distilled | random real | delta, one row per student
    and protocol), then the diversity and DD-Ranking lines."""
    rows = [("protocol", "student", "epochs", "lr", "distilled", "random real", "delta")]
    entries = _entries(results)
    for kind, e in entries:
        d, r = e["distilled"], e["random_real"]
        name = e["protocol"].get("name")
        rows.append((f"{name} ({kind})" if name else kind, e["student"], str(e["protocol"]["epochs"]),
                     f"{e['protocol']['lr']:g}",
                     f"{d['mean']:.2f} ± {d['std']:.2f}", f"{r['mean']:.2f} ± {r['std']:.2f}", f"{e['delta']:+.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n = len(results["seeds"])
    lines.append(f"test top-1 % on {results['dataset']} ({results['num_images']} images), "
                 f"{results.get('reported', 'final epoch')}, mean ± std over {n} seed{'s' if n > 1 else ''}")
    for kind, e in entries:
        d, r = e["distilled"], e["random_real"]
        if "best_mean" in d and "best_mean" in r and e["protocol"].get("report") != "best":
            k = d["runs"][0]["evaluations"]
            lines.append(f"{kind} {e['student']}: best of {k} evaluations (optimistic): distilled {d['best_mean']:.2f}"
                         f" ± {d['best_std']:.2f}, random real {r['best_mean']:.2f} ± {r['best_std']:.2f}")
        if "final_mean" in d and "final_mean" in r:
            lines.append(f"{e['protocol']['name']} {e['student']}: final epoch: distilled {d['final_mean']:.2f} ± "
                         f"{d['final_std']:.2f}, random real {r['final_mean']:.2f} ± {r['final_std']:.2f}")
        if "no_augmentation" in e:
            p = e["no_augmentation"]
            lines.append(f"{kind} {e['student']} without augmentation: distilled {_ms(p['distilled'], 2)}, random "
                         f"real {_ms(p['random_real'], 2)}")
    if "diversity" in results:
        lines += diversity_lines(results["diversity"])
    if results.get("ddranking", {}).get("scores"):
        lines += _ddranking_lines(results["ddranking"])
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
