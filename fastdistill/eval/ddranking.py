"""DD-Ranking's scores (spec engineering.md §9), checked against NUS-HPC-AI-Lab/DD-Ranking b8b0966:
``ddranking/metrics/hard_label.py`` L380-383, ``soft_label.py`` L561-564, ``aug_robust.py`` L577-580.

- HLR (hard label recovery) = acc(full real data, hard labels) - acc(distilled, hard labels);
- IOR (improvement over random) = acc(distilled, its own labels) - acc(same-IPC random real subset, same labels);
- LRS (label-robust score) = squash(w * IOR - (1 - w) * HLR), w = 0.5;
- ARS (augmentation-robust score) = squash(γ * (syn - rdm, with augmentation) + (1 - γ) * (syn - rdm, without)),
  γ = 0.5; "without" trains with no augmentation at all (DD-Ranking: no ``aug_func`` and its plain transform);

with squash(x) = (e^x - e^-1) / (e - e^-1), which maps [-1, 1] onto [0, 1]. DD-Ranking computes the scores per
evaluation run and reports their mean and std over runs; so does :func:`score_rows` (per seed, the distilled and the
random student of a seed paired). Units: accuracies are fractions in [0, 1], as the README's definition ("LRS is
normalized to [0, 1]") needs. DD-Ranking's code at b8b0966 applies the same expression to accuracies in percent
(``validate`` returns percent; ``REAL_DATA_ACC_CACHE`` holds 56.5), where e^α overflows that range for any
difference above one point; percent is refused here. Convert with ``acc / 100``.

The full-data hard-label accuracy is trained once per (dataset fingerprint, student, protocol incl. epochs, seed) and
kept as JSON in a cache folder (:func:`full_data_accuracy`; ``$FASTDISTILL_CACHE`` or ``~/.cache/fastdistill``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fastdistill.data.base import Dataset, Split
from fastdistill.errors import FastDistillError
from fastdistill.eval.protocols import Protocol
from fastdistill.eval.trainer import StudentTrainer
from fastdistill.utils.io import read_json, write_json

_E, _INV_E = math.e, math.exp(-1.0)


def _fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise FastDistillError(f"{name} must be an accuracy fraction in [0, 1] (not percent), got {value}")
    return value


def squash(x: float) -> float:
    """DD-Ranking's map (e^x - e^-1) / (e - e^-1): -1 -> 0, 1 -> 1, increasing."""
    return (math.exp(x) - _INV_E) / (_E - _INV_E)


def hard_label_recovery(real_hard: float, syn_hard: float) -> float:
    """HLR: full-real-data hard-label accuracy minus the distilled set's hard-label accuracy (fractions)."""
    return _fraction("real_hard", real_hard) - _fraction("syn_hard", syn_hard)


def improvement_over_random(syn: float, random: float) -> float:
    """IOR: the distilled set's accuracy minus the random real subset's, under the same labels (fractions)."""
    return _fraction("syn", syn) - _fraction("random", random)


def label_robust_score(hlr: float, ior: float, w: float = 0.5) -> float:
    """LRS = squash(w * IOR - (1 - w) * HLR)."""
    if not 0.0 <= w <= 1.0:
        raise FastDistillError(f"w must be in [0, 1], got {w}")
    return squash(w * ior - (1.0 - w) * hlr)


def augmentation_robust_score(syn_aug: float, random_aug: float, syn_plain: float, random_plain: float,
                              gamma: float = 0.5) -> float:
    """ARS = squash(γ * (syn - random, with augmentation) + (1 - γ) * (syn - random, without)); fractions."""
    if not 0.0 <= gamma <= 1.0:
        raise FastDistillError(f"gamma must be in [0, 1], got {gamma}")
    beta = (gamma * improvement_over_random(syn_aug, random_aug)
            + (1.0 - gamma) * improvement_over_random(syn_plain, random_plain))
    return squash(beta)


@dataclass(frozen=True)
class LabelRobustness:
    """HLR, IOR and LRS of one evaluation (fractions; LRS in [0, 1])."""

    hlr: float
    ior: float
    lrs: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def label_robustness(real_hard: float, syn_hard: float, syn: float, random: float, w: float = 0.5) -> LabelRobustness:
    """HLR, IOR and LRS from the four accuracies: real and distilled with hard labels, distilled and random subset
    with the distilled set's labels (hard or soft)."""
    hlr = hard_label_recovery(real_hard, syn_hard)
    ior = improvement_over_random(syn, random)
    return LabelRobustness(hlr, ior, label_robust_score(hlr, ior, w))


CACHE_ENV = "FASTDISTILL_CACHE"
FULL_DATA_MODES = ("train", "cached", "skip")
REFERENCE = ("NUS-HPC-AI-Lab/DD-Ranking b8b0966: ddranking/metrics/hard_label.py L380-383, soft_label.py L561-564, "
             "aug_robust.py L577-580")


def default_cache_dir() -> Path:
    """``$FASTDISTILL_CACHE``, else ``~/.cache/fastdistill``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fastdistill")


def dataset_fingerprint(dataset: Dataset) -> str:
    """What identifies the data: the imagefolder listing's fingerprint, or the built-in loader's name and sizes."""
    info = dataset.info
    return dataset.fingerprint or (f"built-in {info.name} {info.channels}x{info.image_size}px, "
                                   f"{len(dataset.train)} train / {len(dataset.test)} test images")


def _cache_file(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return cache_dir / "full-data" / f"{key['dataset_name']}-{key['student']}-{digest}.json"


def full_data_accuracy(dataset: Dataset, student: str, protocol: Protocol, *, mode: str = "train",
                       cache_dir: str | Path | None = None, device: torch.device | str = "cpu", seed: int = 0,
                       progress: bool = False, log: Callable[[str], None] = print) -> dict:
    """Test top-1 (%) of ``student`` trained on the whole train split with hard labels under ``protocol``.

    ``mode``: ``train`` (read the cache, else train once and cache), ``cached`` (read the cache only) or ``skip``.
    Returns ``{"top1": float | None, "source": ..., "student", "epochs", "seed", "protocol"}``.
    """
    if mode not in FULL_DATA_MODES:
        raise FastDistillError(f"--full-data takes {', '.join(FULL_DATA_MODES)}, got {mode!r}")
    out = {"top1": None, "student": student, "epochs": protocol.epochs, "seed": seed, "protocol": protocol.to_dict()}
    if mode == "skip":
        return {**out, "source": "skipped (--full-data skip)"}
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = {"dataset": dataset_fingerprint(dataset), "dataset_name": dataset.info.name, "student": student,
           "protocol": protocol.to_dict(), "seed": seed}
    path = _cache_file(cache_dir, key)
    if path.is_file():
        try:
            kept = read_json(path)
        except FastDistillError:
            kept = None
        if isinstance(kept, dict) and kept.get("key") == json.loads(json.dumps(key)) and "top1" in kept:
            return {**out, "top1": float(kept["top1"]), "source": f"cache {path}"}
    if mode == "cached":
        return {**out, "source": f"not in the cache {cache_dir} (evaluate with --full-data train to compute it)"}
    train = dataset.train.decoded()
    log(f"full-data hard-label student {student}: {len(train)} images, {protocol.epochs} epochs (trained once, "
        f"then cached in {cache_dir})")
    start = time.perf_counter()
    trainer = StudentTrainer(dataset.info, protocol, student=student, seed=seed, device=device)
    trainer.fit(train.images, train.labels, progress=progress, desc=f"full data {student}", stream=True)
    test = dataset.test.decoded()
    test = Split(test.images.to(device), test.labels.to(device))
    top1 = trainer.accuracy(test)
    seconds = round(time.perf_counter() - start, 3)
    write_json(path, {"key": key, "top1": top1, "seconds": seconds, "steps": trainer.steps})
    log(f"  full data {student}: top-1 {top1:6.2f}% ({seconds:.1f}s) -> {path}")
    return {**out, "top1": top1, "source": f"trained ({seconds:.1f}s), cached in {path}"}


def _runs(entry: dict | None, which: str) -> dict[int, float]:
    return {} if entry is None else {r["seed"]: r["top1"] / 100 for r in entry[which]["runs"]}


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def score_row(student: str, kind: str, entry: dict, hard: dict | None, full: dict | None,
              no_aug: dict | None = None, w: float = 0.5, gamma: float = 0.5) -> dict:
    """HLR, IOR, LRS and ARS of one (student, protocol) evaluation, per seed and as mean ± std over seeds.

    ``entry``: the harness entry of that protocol; ``hard``: the same student's hard-label entry (for HLR);
    ``full``: :func:`full_data_accuracy`'s result; ``no_aug``: the entry trained without augmentation (for ARS).
    HLR and IOR are fractions (accuracy / 100); accuracies are reported in percent.
    """
    syn, rdm = _runs(entry, "distilled"), _runs(entry, "random_real")
    syn_hard = _runs(hard, "distilled")
    syn_plain, rdm_plain = _runs(no_aug, "distilled"), _runs(no_aug, "random_real")
    real_hard = None if full is None or full["top1"] is None else full["top1"] / 100
    per_seed = []
    if not (0.0 <= w <= 1.0 and 0.0 <= gamma <= 1.0):
        raise FastDistillError(f"w and gamma must be in [0, 1], got {w}, {gamma}")
    for seed in syn:  # the harness's accuracies / 100: fractions by construction, used as they are
        row: dict = {"seed": seed, "ior": syn[seed] - rdm[seed]}
        if real_hard is not None and seed in syn_hard:
            row["hlr"] = real_hard - syn_hard[seed]
            row["lrs"] = squash(w * row["ior"] - (1.0 - w) * row["hlr"])
        if seed in syn_plain and seed in rdm_plain:
            row["ars"] = squash(gamma * row["ior"] + (1.0 - gamma) * (syn_plain[seed] - rdm_plain[seed]))
        per_seed.append(row)
    out: dict = {"student": student, "protocol": kind}
    std = {}
    for name in ("hlr", "ior", "lrs", "ars"):
        out[name], std[name] = _stats([r[name] for r in per_seed if name in r])
    missing = {}
    if out["hlr"] is None:
        missing["hlr"] = missing["lrs"] = (
            f"no hard-label evaluation of {student}" if hard is None else
            f"no full-data accuracy: {full['source'] if full else 'not computed'}")
    if out["ars"] is None:
        missing["ars"] = "no evaluation without augmentation (evaluate --ars)"
    mean = lambda e, which: None if e is None else e[which]["mean"]  # noqa: E731
    out.update({"std": std, "per_seed": per_seed,
                "accuracy": {"full_data_hard": None if full is None else full["top1"],
                             "distilled_hard": mean(hard, "distilled"), "distilled": mean(entry, "distilled"),
                             "random_real": mean(entry, "random_real"),
                             "distilled_no_aug": mean(no_aug, "distilled"),
                             "random_real_no_aug": mean(no_aug, "random_real")},
                "sources": {"full_data_hard": None if full is None else full["source"],
                            "distilled_hard": None if hard is None else f"{student}, hard protocol" + (
                                " (distilled set only, trained for HLR)" if hard.get("for_hlr_only") else ""),
                            "distilled": f"{student}, {kind} protocol", "random_real": f"{student}, {kind} protocol",
                            "no_aug": None if no_aug is None else f"{student}, {kind} protocol, no augmentation"}})
    if missing:
        out["missing"] = missing
    return out
