"""Selection of the initial real images: ranking per mode (DELT data_selection.py semantics)."""

import pytest
import torch

from fastdistill.errors import FastDistillError
from fastdistill.methods.delt.selection import medium_order, rank_class, select_initial


def test_medium_alternates_around_the_median():
    assert medium_order(100, 7) == [50, 51, 49, 52, 48, 53, 47]
    assert medium_order(11, 5) == [6, 7, 5, 8, 4]
    assert sorted(medium_order(10, 10)) == list(range(10))  # out-of-range positions skipped, all taken


def test_rank_modes_on_random_scores():
    scores = torch.rand(37, generator=torch.Generator().manual_seed(3))
    order = torch.argsort(scores)
    assert torch.equal(rank_class(scores, 5, "top"), order.flip(0)[:5])
    assert torch.equal(rank_class(scores, 5, "min"), order[:5])
    assert torch.equal(rank_class(scores, 3, "medium"), order[[19, 20, 18]])
    r = rank_class(scores, 6, "random", torch.Generator().manual_seed(0))
    assert r.unique().numel() == 6 and torch.equal(r, rank_class(scores, 6, "random", torch.Generator().manual_seed(0)))


def test_ties_keep_lower_index_first():
    scores = torch.tensor([0.5, 0.9, 0.5, 0.9, 0.1])
    assert rank_class(scores, 2, "top").tolist() == [1, 3]
    assert rank_class(scores, 3, "min").tolist() == [4, 0, 2]


def test_select_initial_per_class_and_ipc_error():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 1])
    scores = torch.tensor([0.1, 0.2, 0.9, 0.8, 0.5, 0.3, 0.4])
    chosen = select_initial(scores, labels, 2, 2, "top")
    assert chosen[0].tolist() == [2, 4] and chosen[1].tolist() == [3, 6]
    with pytest.raises(FastDistillError, match="larger than class 0"):
        select_initial(scores, labels, 2, 4, "top")
