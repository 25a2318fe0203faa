"""torchrun set-up: ranks agree on the run folder, bad set-ups stop every rank with one line."""

from __future__ import annotations

import pytest

from fastdistill.utils import distributed
from tests.ranks import run_ranks

TINY_DELT = ["delt", "--ipc", "1", "--iterations", "125", "--no-eval"]


def test_single_process_world_and_helpers():
    w = distributed.world()
    assert (w.rank, w.size, w.main, w.tag) == (0, 1, True, "")
    assert distributed.deal(list(range(5))) == [0, 1, 2, 3, 4]
    assert distributed.deal(list(range(5)), distributed.World(1, 2)) == [1, 3]
    assert distributed.gather("x") == ["x"] and distributed.broadcast(3) == 3
    assert distributed.agree(lambda: 7) == 7


def test_deal_covers_every_item_once():
    items = list(range(11))
    shares = [distributed.deal(items, distributed.World(r, 3)) for r in range(3)]
    assert sorted(x for s in shares for x in s) == items


def test_mismatched_output_is_one_line_on_every_rank(tmp_path):
    done = run_ranks([*TINY_DELT, "--output", str(tmp_path / "a")], 2,
                     per_rank={1: ([*TINY_DELT, "--output", str(tmp_path / "b")], None)}, timeout=300)
    assert [d.returncode for d in done] == [2, 2]
    lines = done[0].stderr.strip().splitlines()
    assert lines[-1].startswith("error: the ranks were given different --output folders"), done[0].stderr
    assert "Traceback" not in done[0].stderr + done[1].stderr
    assert "error" not in done[1].stderr  # printed once, by rank 0
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_nccl_without_gpus_is_one_line(tmp_path):
    pytest.importorskip("torch.distributed")
    import torch

    if torch.cuda.is_available():
        pytest.skip("GPUs are visible here")
    done = run_ranks([*TINY_DELT, "--output", str(tmp_path / "a")], 2,
                     per_rank={r: (None, {distributed.BACKEND_ENV: "nccl"}) for r in range(2)}, timeout=300)
    assert [d.returncode for d in done] == [2, 2]
    assert done[0].stderr.strip().splitlines()[-1].startswith("error: NCCL was asked for under torchrun but no CUDA")
    assert "Traceback" not in done[0].stderr
