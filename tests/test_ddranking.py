"""DD-Ranking's HLR, IOR, LRS and ARS on given accuracies (fractions)."""

from __future__ import annotations

import math

import pytest

from fastdistill.errors import FastDistillError
from fastdistill.eval.ddranking import (
    augmentation_robust_score,
    hard_label_recovery,
    improvement_over_random,
    label_robust_score,
    label_robustness,
    squash,
)


def _formula(x: float) -> float:
    return (math.exp(x) - math.exp(-1)) / (math.e - math.exp(-1))


def test_squash_bounds_and_midpoint():
    assert squash(1.0) == pytest.approx(1.0, abs=1e-15)
    assert squash(-1.0) == pytest.approx(0.0, abs=1e-15)
    assert squash(0.0) == pytest.approx((1 - math.exp(-1)) / (math.e - math.exp(-1)))


def test_lrs_bounds():
    # alpha = 0.5 * IOR - 0.5 * HLR = 1 needs IOR = 1, HLR = -1; alpha = -1 needs IOR = -1, HLR = 1
    assert label_robust_score(hlr=-1.0, ior=1.0) == pytest.approx(1.0, abs=1e-15)
    assert label_robust_score(hlr=1.0, ior=-1.0) == pytest.approx(0.0, abs=1e-15)
    best = label_robustness(real_hard=0.0, syn_hard=1.0, syn=1.0, random=0.0)
    worst = label_robustness(real_hard=1.0, syn_hard=0.0, syn=0.0, random=1.0)
    assert (best.hlr, best.ior, best.lrs) == (-1.0, 1.0, pytest.approx(1.0))
    assert (worst.hlr, worst.ior, worst.lrs) == (1.0, -1.0, pytest.approx(0.0, abs=1e-15))


def test_label_robustness_equals_formula():
    r = label_robustness(real_hard=0.842, syn_hard=0.473, syn=0.612, random=0.388)
    hlr, ior = 0.842 - 0.473, 0.612 - 0.388
    assert r.hlr == pytest.approx(hlr) and r.ior == pytest.approx(ior)
    assert r.lrs == pytest.approx(_formula(0.5 * ior - 0.5 * hlr))
    assert label_robust_score(hlr, ior, w=0.8) == pytest.approx(_formula(0.8 * ior - 0.2 * hlr))
    assert r.to_dict() == {"hlr": r.hlr, "ior": r.ior, "lrs": r.lrs}


def test_ars_equals_formula_and_bounds():
    got = augmentation_robust_score(syn_aug=0.7, random_aug=0.5, syn_plain=0.55, random_plain=0.45)
    assert got == pytest.approx(_formula(0.5 * 0.2 + 0.5 * 0.1))
    assert augmentation_robust_score(0.7, 0.5, 0.55, 0.45, gamma=1.0) == pytest.approx(_formula(0.2))
    assert augmentation_robust_score(1.0, 0.0, 1.0, 0.0) == pytest.approx(1.0)
    assert augmentation_robust_score(0.0, 1.0, 0.0, 1.0) == pytest.approx(0.0, abs=1e-15)


def test_parts():
    assert hard_label_recovery(0.9, 0.4) == pytest.approx(0.5)
    assert improvement_over_random(0.4, 0.3) == pytest.approx(0.1)


@pytest.mark.parametrize("call", [
    lambda: hard_label_recovery(84.2, 47.3),  # percent
    lambda: improvement_over_random(0.5, -0.1),
    lambda: label_robust_score(0.1, 0.2, w=1.5),
    lambda: augmentation_robust_score(0.5, 0.4, 0.5, 0.4, gamma=-0.1),
])
def test_bad_input(call):
    with pytest.raises(FastDistillError):
        call()
