"""DELT and squeeze under torchrun (gloo, 2 CPU processes): the same images as one process, resume with another world
size, one-line errors when one rank's set-up fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fastdistill.data.base import Split
from fastdistill.methods.delt.selection import read_scores, score_chunks, score_split
from fastdistill.utils import distributed
from tests.ranks import ROOT, rank_env, run_ranks, start_ranks

CPU = ["--device", "cpu"]
# 10 groups (one class each), two EarlyLate rounds, one group per launch: each group file is written on its own
DELT = ["delt", "--ipc", "2", "--iterations", "100", "--round-iterations", "50", "--batch-size", "2",
        "--groups-per-launch", "1", "--no-eval", *CPU]


def _one_process(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "fastdistill", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _ok(done: list[subprocess.CompletedProcess]) -> None:
    assert [d.returncode for d in done] == [0] * len(done), "\n".join(d.stderr[-2000:] for d in done)


def _same_images(a: Path, b: Path) -> None:
    """Byte-identical PNGs and distilled tensors."""
    pngs = sorted(p.relative_to(a) for p in (a / "images").rglob("*.png"))
    assert pngs and pngs == sorted(p.relative_to(b) for p in (b / "images").rglob("*.png"))
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in pngs)
    x, y = torch.load(a / "distilled.pt"), torch.load(b / "distilled.pt")
    assert torch.equal(x["images"], y["images"]) and torch.equal(x["labels"], y["labels"])


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    """A tiny digits teacher (squeeze, 1 epoch) and the one-process DELT run every other run must reproduce."""
    root = tmp_path_factory.mktemp("dist")
    p = {"root": root, "teacher": root / "teacher", "one": root / "one"}
    _one_process(["squeeze", "--epochs", "1", *CPU, "--output", str(p["teacher"])])
    _one_process([*DELT, "--teacher", str(p["teacher"]), "--output", str(p["one"])])
    return p


def test_deal_by_cost_balances_and_keeps_order():
    costs = [5, 1, 4, 4, 2, 3, 1]
    items = list(range(len(costs)))
    shares = [distributed.deal(items, distributed.World(r, 2), cost=costs.__getitem__) for r in range(2)]
    assert sorted(i for s in shares for i in s) == items and all(s == sorted(s) for s in shares)
    assert [sum(costs[i] for i in s) for s in shares] == [10, 10]
    assert distributed.deal(items, distributed.World(0, 1), cost=costs.__getitem__) == items


def test_cpu_launch_budget_is_split_between_the_nodes_processes(monkeypatch):
    from fastdistill.methods.delt import launch_memory

    monkeypatch.setattr(launch_memory, "_available_ram", lambda: 8 << 30)
    alone = launch_memory.memory_budget(torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert launch_memory.memory_budget(torch.device("cpu")) == alone // 2


def test_score_chunks_dealt_to_ranks_read_back_equal_one_pass(tmp_path):
    torch.manual_seed(0)
    split = Split((torch.rand(23, 1, 4, 4) * 255).to(torch.uint8), torch.randint(0, 3, (23,)))
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    prepare = lambda u8: u8.float() / 255  # noqa: E731
    for rank in range(2):  # chunks 0, 2 on rank 0; 1 on rank 1 (3 chunks of 2 batches of 4)
        positions = distributed.deal(range(3), distributed.World(rank, 2))
        got = score_chunks(teacher, split, prepare, tmp_path, positions, batch_size=4, chunk_batches=2,
                           progress=False)
        assert sorted(got) == positions
    scores, labels = read_scores(tmp_path, 23, batch_size=4, chunk_batches=2)
    ref_scores, ref_labels = score_split(teacher, split, prepare, batch_size=4, chunk_batches=2, progress=False)
    assert torch.equal(scores, ref_scores) and torch.equal(labels, ref_labels)


def test_two_processes_write_the_images_of_one(base):
    out = base["root"] / "two"
    done = run_ranks([*DELT, "--teacher", str(base["teacher"]), "--output", str(out)], 2)
    _ok(done)
    _same_images(base["one"], out)
    assert "DELT: 20 images" in done[0].stdout and done[1].stdout == ""  # rank 0 alone prints
    assert "rank 1/2 " in done[1].stderr  # every rank's progress goes to the log
    ranks = json.loads((out / "summary.json").read_text())["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and sum(r["launches"] for r in ranks) == 10


def test_torchrun_matches_one_process(base):
    out = base["root"] / "torchrun"
    env = {k: v for k, v in rank_env(0, 1, 0).items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                        "MASTER_PORT")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "fastdistill", *DELT, "--teacher", str(base["teacher"]), "--output", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _same_images(base["one"], out)


def test_teacher_trained_into_the_run_by_rank_0(base):
    """Without --teacher rank 0 trains it alone (as one process would) and rank 1 loads it once it is saved."""
    out, again = base["root"] / "trained", base["root"] / "trained-again"
    done = run_ranks([*DELT, "--output", str(out)], 2)
    _ok(done)
    assert "training a convnet3-bn teacher" in done[0].stdout
    _one_process([*DELT, "--teacher", str(out / "teacher"), "--output", str(again)])
    _same_images(out, again)


def _killed_midway(base: dict[str, Path], out: Path) -> None:
    """Start 2 ranks, SIGKILL rank 1 once a group file exists, then rank 0 (as torchrun would)."""
    procs = start_ranks([*DELT, "--teacher", str(base["teacher"]), "--output", str(out)], 2)
    try:
        deadline = time.time() + 300
        while not list((out / "progress").glob("group_*.pt")):
            assert time.time() < deadline and all(p.poll() is None for p in procs), "no group was saved"
            time.sleep(0.02)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
        procs[0].send_signal(signal.SIGKILL)
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    assert not (out / "summary.json").exists()
    # a write cut short by the kill leaves a temporary file like this one
    (out / "progress" / ".group_00009.pt.abc123.tmp").write_bytes(b"partial")


def test_killed_two_process_run_resumes_under_one_process(base):
    out = base["root"] / "killed"
    _killed_midway(base, out)
    saved = len(list((out / "progress").glob("group_*.pt")))
    assert 1 <= saved < 10
    _one_process([*DELT, "--teacher", str(base["teacher"]), "--output", str(out), "--resume"])
    _same_images(base["one"], out)
    assert not list(out.rglob("*.tmp"))


def test_torchrun_restart_resumes_without_the_flag(base):
    out = base["root"] / "restarted"
    _killed_midway(base, out)
    done = run_ranks([*DELT, "--teacher", str(base["teacher"]), "--output", str(out)], 2,
                     per_rank={r: (None, {"TORCHELASTIC_RESTART_COUNT": "1"}) for r in range(2)})
    _ok(done)
    _same_images(base["one"], out)
    assert not list(out.rglob("*.tmp"))


def _image_folder(root: Path) -> Path:
    for split in ("train", "val"):
        for c, shade in (("cat", 40), ("dog", 200)):
            (root / split / c).mkdir(parents=True)
            for k in range(3):
                Image.new("RGB", (10, 10), (shade, 30 * k, 20)).save(root / split / c / f"{k}.png")
    return root


@pytest.mark.parametrize("what", ["data root", "teacher"])
def test_a_rank_that_cannot_see_an_input_stops_every_rank_with_one_line(base, tmp_path, what):
    if what == "data root":
        args = [*DELT, "--dataset", "imagefolder", "--image-size", "8", "--output", str(tmp_path / "run")]
        good, bad = ([*args, "--data-root", str(_image_folder(tmp_path / "data"))],
                     [*args, "--data-root", str(tmp_path / "missing")])
    else:
        args = [*DELT, "--output", str(tmp_path / "run")]
        good, bad = [*args, "--teacher", str(base["teacher"])], [*args, "--teacher", str(tmp_path / "missing")]
    done = run_ranks(good, 2, per_rank={1: (bad, None)}, timeout=300)
    assert [d.returncode for d in done] == [2, 2], done[0].stderr[-2000:]
    last = done[0].stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank 1: ") and str(tmp_path / "missing") in last, last
    assert "Traceback" not in done[0].stderr + done[1].stderr
    assert "error" not in done[1].stderr  # printed once, by rank 0
    assert not (tmp_path / "run").exists()


def test_squeeze_ddp_trains_the_model_of_one_process(tmp_path):
    """Without BatchNorm, DDP over 2 ranks (each half of every global batch) follows one process's training up to
    the order of floating-point sums."""
    args = ["squeeze", "--arch", "convnet3-none", "--epochs", "1", *CPU]
    _one_process([*args, "--output", str(tmp_path / "one")])
    done = run_ranks([*args, "--output", str(tmp_path / "two")], 2)
    _ok(done)
    one, two = load_file(tmp_path / "one" / "teacher.safetensors"), load_file(tmp_path / "two" / "teacher.safetensors")
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-3, atol=1e-4)
    assert done[1].stdout == "" and "rank 1/2 squeeze" in done[1].stderr
