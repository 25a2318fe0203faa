"""EarlyLate schedule, LR and crop curricula against the spec's worked tables (delt.md §5.2, §5.3)."""

import pytest
import torch

from fastdistill.methods.delt.schedule import (
    class_rounds,
    cosine_lr,
    group_schedule,
    join_round,
    min_crop_scale,
    round_sizes,
)

ROUNDS_8 = torch.full((1000,), 8, dtype=torch.long)


def _group(ipc: int, classes_per_group: int, first_class: int = 0):
    classes = [first_class + c for c in range(classes_per_group) for _ in range(ipc)]
    ranks = list(range(ipc)) * classes_per_group
    return group_schedule(classes, ranks, ipc, ROUNDS_8, 500)


def test_ipc50_table():
    s = _group(50, 2)
    assert [len(a) for a in s.active] == [14, 28, 40, 52, 64, 76, 88, 100]
    assert s.total_iterations == 4000
    per_image = s.iterations_per_row(100)
    assert per_image[:7] == [4000] * 7 and per_image[7:14] == [3500] * 7 and per_image[44:50] == [500] * 6
    assert sum(per_image) == 231_000  # -42.25 % of 400,000
    assert round_sizes(50, 8) == [7, 7, 6, 6, 6, 6, 6, 6]


def test_ipc10_table():
    s = _group(10, 10)
    assert [len(a) for a in s.active] == [20, 40, 50, 60, 70, 80, 90, 100]
    assert s.iterations_per_row(100)[:10] == [4000, 4000, 3500, 3500, 3000, 2500, 2000, 1500, 1000, 500]
    assert sum(s.iterations_per_row(100)) / 400_000 == pytest.approx(1 - 0.3625)


@pytest.mark.parametrize("ipc,cum", [(100, [13, 26, 39, 52, 64, 76, 88, 100]), (10, [2, 4, 5, 6, 7, 8, 9, 10])])
def test_cumulative_round_sizes(ipc, cum):
    sizes = round_sizes(ipc, 8)
    assert [sum(sizes[: r + 1]) for r in range(8)] == cum
    assert [join_round(i, ipc, 8) for i in range(ipc)] == [next(r for r, c in enumerate(cum) if i < c)
                                                          for i in range(ipc)]


def test_ipc5_late_rounds_run_empty_of_joiners():
    s = _group(5, 20)
    assert len(s.active) == 8  # rounds 5-7 add nobody but still run
    assert sum(s.iterations_per_row(100)) / (100 * 4000) == pytest.approx(0.75)


def test_empty_rounds_are_removed_for_a_split_class():
    # a class split over two groups: the second group holds ranks 7..9 of IPC 10 with 8 rounds -> joins at round 5
    s = group_schedule([3, 3, 3], [7, 8, 9], 10, ROUNDS_8, 500)
    assert [len(a) for a in s.active] == [1, 2, 3]
    assert s.total_iterations == 1500


def test_class_rounds_range_and_seed():
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    r = class_rounds(500, 4000, 500, 2000, g1)
    assert int(r.min()) == 4 and int(r.max()) == 8
    assert torch.equal(r, class_rounds(500, 4000, 500, 2000, g2))
    assert torch.equal(class_rounds(3, 4000, 500, 4000), torch.full((3,), 8))


def test_lr_and_crop_at_round_starts():
    lr = [round(cosine_lr(0.25, 500 * k, 4000), 4) for k in range(8)]
    crop = [round(min_crop_scale(500 * k, 4000), 3) for k in range(8)]
    assert lr == [0.25, 0.2405, 0.2134, 0.1728, 0.125, 0.0772, 0.0366, 0.0095]
    assert crop == [1.0, 0.965, 0.865, 0.716, 0.54, 0.364, 0.215, 0.115]


def test_crop_modes():
    assert min_crop_scale(10, 100, mode="step") == 1.0
    assert min_crop_scale(50, 100, mode="linear") == pytest.approx(0.08 + 0.92 * 0.5)
    assert min_crop_scale(60, 100, milestone=0.5) == 0.08
    assert min_crop_scale(0, 100, floor=0.5) == 1.0 and min_crop_scale(100, 100, floor=0.5) == 0.5
    with pytest.raises(ValueError):
        min_crop_scale(0, 10, mode="bogus")
