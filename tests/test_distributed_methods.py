"""torchrun for MGD3, the matching methods and evaluate: 2 gloo processes give what 1 process gives."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from fastdistill.cli import main
from fastdistill.ops import kmeans
from fastdistill.utils import distributed
from tests.ranks import run_ranks

kmeans_module = importlib.import_module("fastdistill.ops.kmeans")  # the module, not the function
CPU = ["--device", "cpu", "--seed", "3", "--no-eval"]


def _files(run_dir: Path) -> dict[str, str]:
    """sha256 of the distilled set's files (images/*.png, grid.png, distilled.pt) of a run folder."""
    files = [*sorted((run_dir / "images").rglob("*.png")), run_dir / "grid.png", run_dir / "distilled.pt"]
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _images(run_dir: Path) -> torch.Tensor:
    return torch.load(run_dir / "distilled.pt", weights_only=True)["images"]


def _run(args: list[str], size: int, tmp_path: Path) -> None:
    done = run_ranks(args, size, cwd=tmp_path, timeout=600)
    for rank, d in enumerate(done):
        assert d.returncode == 0, f"rank {rank} of {size}:\n{d.stderr[-3000:]}"


def test_block_covers_every_index_once():
    for count in (0, 1, 5, 10):
        for size in (1, 2, 3):
            shares = [list(distributed.block(count, distributed.World(r, size))) for r in range(size)]
            assert [i for s in shares for i in s] == list(range(count))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_kmeans_parts_together_equal_one_process(monkeypatch):
    monkeypatch.setattr(kmeans_module, "_CPU_BATCH_BYTES", 40 * 6 * 4)  # a batch of ~2 groups: 4 batches
    gen = torch.Generator().manual_seed(1)
    counts = [13, 9, 21, 11, 8, 15, 10]
    points = torch.randn(sum(counts), 6, generator=gen)
    groups = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    whole, _ = kmeans(points, 3, groups, seed=4)
    for init in ("k-means++", "random"):
        one = kmeans_module.kmeans_grouped(lambda lo, hi: points[lo:hi], counts, 6, 3, seed=4, init=init)
        if init == "k-means++":
            assert torch.equal(one, whole)
        for size in (2, 3):
            parts = [kmeans_module.kmeans_grouped(lambda lo, hi: points[lo:hi], counts, 6, 3, seed=4, init=init,
                                                  part=(r, size)) for r in range(size)]
            done = [~p[:, 0, 0].isnan() for p in parts]
            assert torch.equal(sum(d.long() for d in done), torch.ones(len(counts), dtype=torch.long))
            combined = torch.stack([parts[int(torch.stack(done)[:, g].nonzero())][g] for g in range(len(counts))])
            assert torch.equal(combined, one), (init, size)


@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory):
    pytest.importorskip("diffusers")
    run = tmp_path_factory.mktemp("pixel")
    assert main(["train-diffusion", "--steps", "3", "--batch-size", "8", "--width", "8", "--output", str(run / "m"),
                 "--device", "cpu", "--seed", "1"]) == 0
    return run / "m"


def test_mgd_two_processes_write_the_bytes_of_one(pixel_model, tmp_path):
    # digits: 2 latent-cache chunks (1024 images each) and 3 sampling chunks of 8 rows, dealt over the 2 ranks
    args = ["mgd", "--diffusion", str(pixel_model), "--ipc", "2", "--steps", "4", "--batch-size", "8", *CPU]
    _run([*args, "--output", str(tmp_path / "one")], 1, tmp_path)
    _run([*args, "--output", str(tmp_path / "two")], 2, tmp_path)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(one) == 20 + 2 and one == two  # 10 classes x IPC 2 PNGs, grid.png, distilled.pt
    assert sorted(p.name for p in (tmp_path / "two" / "latents").glob("chunk_*.pt")) == ["chunk_00000.pt",
                                                                                      "chunk_00001.pt"]
    assert torch.equal(torch.load(tmp_path / "one" / "modes.pt"), torch.load(tmp_path / "two" / "modes.pt"))
    # resumed with another number of processes: the units are chunks, not ranks
    two = tmp_path / "two"
    for name in ("distilled.pt", "grid.png", "modes.pt", "samples/chunk_00001.pt", "latents/chunk_00000.pt"):
        (two / name).unlink()
    shutil.rmtree(two / "images")
    _run([*args, "--output", str(two), "--resume"], 1, tmp_path)
    assert _files(two) == one


@pytest.mark.parametrize("batch", ["off", "on"])
def test_evaluate_two_processes_give_the_table_of_one(tmp_path, batch):
    # on: the pair's 6 students are one stacked network on one rank, so the rounding is that of one process
    run = tmp_path / "dm"
    assert main(["distill", "--method", "dm", "--ipc", "1", "--iterations", "1", "--quiet", *CPU,
                 "--output", str(run)]) == 0
    tables = {}
    for size in (1, 2):
        _run(["evaluate", str(run), "--protocols", "hard", "--seeds", "3", "--epochs", "2", "--full-data", "skip",
              "--quiet", "--batch-students", batch], size, tmp_path)
        results = json.loads((run / "results.json").read_text())
        assert results["batch_students"] is (batch == "on")
        assert all(r.get("batched") == (6 if batch == "on" else None)
                   for r in results["protocols"]["hard"]["distilled"]["runs"])
        tables[size] = {which: [(r["seed"], r["top1"], r["per_class_top1"], r["curve"]["loss"])
                                for r in results["protocols"]["hard"][which]["runs"]]
                        for which in ("distilled", "random_real")}
        assert len(tables[size]["distilled"]) == 3
        (run / "results.json").unlink()
        for kept in (run / "progress" / "evaluate").glob("*.json"):
            kept.unlink()
    assert tables[1] == tables[2]


@pytest.mark.parametrize("args", [
    ["distill", "--method", "dm", "--ipc", "2", "--iterations", "3"],
    ["pdd", "--base", "dm", "--ipc", "2", "--stages", "2", "--iterations", "3"],  # classes and the pool in blocks
    ["distill", "--method", "dsa", "--ipc", "1", "--iterations", "1", "--outer-loop", "2", "--inner-loop", "1"],
], ids=["distill-dm", "pdd-dm", "distill-dsa"])
def test_matching_two_processes_write_the_bytes_of_one(args, tmp_path):
    for size in (1, 2):
        _run([*args, "--quiet", *CPU, "--output", str(tmp_path / f"p{size}")], size, tmp_path)
    assert _files(tmp_path / "p1") == _files(tmp_path / "p2")
    one = torch.load(tmp_path / "p1" / "checkpoint.pt", weights_only=False)
    two = torch.load(tmp_path / "p2" / "checkpoint.pt", weights_only=False)
    assert torch.equal(one["frozen"], two["frozen"])
    assert one["losses"] == pytest.approx(two["losses"], rel=1e-5)  # summed over the ranks in another order


def test_pdd_mtt_two_processes_match_one_within_rounding(tmp_path):
    buffer = tmp_path / "buffer"
    assert main(["buffer", "--experts", "2", "--epochs", "2", "--arch", "convnet1", "--batch-size", "256",
                 "--output", str(buffer), "--quiet", "--device", "cpu"]) == 0
    args = ["pdd", "--base", "mtt", "--ipc", "2", "--stages", "2", "--buffer", str(buffer), "--arch", "convnet1",
            "--iterations", "3", "--syn-steps", "3", "--max-start-epoch", "1", "--expert-epochs", "1",
            "--transition-epochs", "1", "--memory", "lean", "--batch-syn", "7", "--quiet", *CPU]
    for size in (1, 2):
        _run([*args, "--output", str(tmp_path / f"p{size}")], size, tmp_path)
    one, two = (torch.load(tmp_path / f"p{s}" / "distilled.pt", weights_only=True) for s in (1, 2))
    # every unrolled step's minibatch of 7 is split 4 + 3 over the ranks: sums grouped differently
    assert (one["images"].int() - two["images"].int()).abs().max() <= 1
    assert one["eval_lr"] == pytest.approx(two["eval_lr"], rel=1e-5)
    experts = [torch.load(tmp_path / f"p{s}" / "trajectories_stage2.pt") for s in (1, 2)]
    assert torch.equal(*experts)  # the transition's experts are trained whole, in blocks over the ranks


def test_a_method_that_does_not_divide_is_refused_with_one_line(tmp_path):
    done = run_ranks(["pdd", "--base", "delt", "--teacher", str(tmp_path / "t"), "--ipc", "2", "--stages", "2",
                      *CPU, "--output", str(tmp_path / "out")], 2, cwd=tmp_path, timeout=300)
    assert [d.returncode for d in done] == [2, 2]
    assert done[0].stderr.strip().splitlines()[-1].startswith("error: delt does not divide its work over several")
    assert "error" not in done[1].stderr and not (tmp_path / "out").exists()
