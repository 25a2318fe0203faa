"""DD-Ranking's scores (spec engineering.md §9; NUS-HPC-AI-Lab/DD-Ranking ``ddranking/metrics``).

- HLR (hard label recovery) = acc(full real data, hard labels) - acc(distilled, hard labels);
- IOR (improvement over random) = acc(distilled, its own labels) - acc(same-IPC random real subset, same labels);
- LRS (label-robust score) = squash(w * IOR - (1 - w) * HLR), w = 0.5;
- ARS (augmentation-robust score) = squash(γ * (syn - rdm, with augmentation) + (1 - γ) * (syn - rdm, without)),
  γ = 0.5;

with squash(x) = (e^x - e^-1) / (e - e^-1), which maps [-1, 1] onto [0, 1]. Units: accuracies are fractions in
[0, 1], not percent, so that α and β lie in [-1, 1] and the scores in [0, 1] as DD-Ranking reports them (its
evaluators log accuracies in percent; on percent inputs the formula would overflow the range, so percent is refused
here). Convert with ``acc / 100``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fastdistill.errors import FastDistillError

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
