"""Through the CLI: unreadable checkpoints are redone on --resume (same images), a full disk ends in one line, and a
Ctrl-C while the CLI is still importing ends in one line with status 130."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from fastdistill.cli import main
from fastdistill.errors import FastDistillError

COMMON = ["--no-eval", "--device", "cpu", "--seed", "3"]
DELT = ["delt", "--ipc", "3", "--iterations", "4", "--round-iterations", "2", "--batch-size", "10"]


def test_truncated_checkpoints_are_redone_on_resume(tmp_path, capsys):
    teacher, done, resumed = tmp_path / "teacher", tmp_path / "done", tmp_path / "resumed"
    assert main(["squeeze", "--epochs", "1", "--output", str(teacher), "--device", "cpu", "--seed", "1"]) == 0
    argv = [*DELT, "--teacher", str(teacher), *COMMON]
    assert main([*argv, "--output", str(done)]) == 0
    # the state of a run interrupted after its last group: progress saved, no final outputs
    shutil.copytree(done, resumed)
    for name in ("distilled.pt", "grid.png", "summary.json", "images"):
        path = resumed / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    group0, group1, selection = (resumed / "progress" / n for n in ("group_00000.pt", "group_00001.pt", "selection.pt"))
    group0.write_bytes(group0.read_bytes()[:500])
    selection.write_bytes(b"")
    kept = group1.stat().st_mtime_ns
    capsys.readouterr()

    assert main([*argv, "--output", str(resumed), "--resume"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and str(selection) in warnings[0] and str(group0) in warnings[1]
    assert group1.stat().st_mtime_ns == kept  # only the unreadable unit was redone
    assert torch.load(group0, weights_only=True)["images"].shape[0] > 0
    a, b = (torch.load(run / "distilled.pt", weights_only=True) for run in (done, resumed))
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])


def test_unreadable_mgd_chunks_and_modes_are_redone_on_resume(tmp_path, capsys):
    pytest.importorskip("diffusers")
    pixel, done, resumed = tmp_path / "pixel", tmp_path / "done", tmp_path / "resumed"
    assert main(["train-diffusion", "--steps", "3", "--batch-size", "8", "--width", "8", "--output", str(pixel),
                 "--device", "cpu", "--seed", "1"]) == 0
    argv = ["mgd", "--diffusion", str(pixel), "--ipc", "2", "--steps", "4", "--batch-size", "8", *COMMON]
    assert main([*argv, "--output", str(done)]) == 0
    shutil.copytree(done, resumed)
    for name in ("distilled.pt", "grid.png", "images"):
        path = resumed / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    broken = [resumed / "modes.pt", resumed / "latents" / "chunk_00000.pt", resumed / "samples" / "chunk_00001.pt"]
    for path, data in zip(broken, [b"garbage", b"", (resumed / "samples" / "chunk_00001.pt").read_bytes()[:300]],
                          strict=True):
        path.write_bytes(data)
    capsys.readouterr()

    assert main([*argv, "--output", str(resumed), "--resume"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and all(str(p) in w for p, w in zip(broken, warnings, strict=True))
    a, b = (torch.load(run / "distilled.pt", weights_only=True) for run in (done, resumed))
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])


def test_disk_full_while_saving_the_teacher(tmpfs, capsys):
    mnt = tmpfs("256k")
    assert main(["squeeze", "--epochs", "1", "--output", str(mnt / "t"), "--device", "cpu", "--seed", "1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and err[0].startswith(f"error: disk full while writing {mnt / 't'}"), err
    assert "this step needs about 1." in err[0] and "MB" in err[0]
    assert not [p for p in (mnt / "t").iterdir() if p.name.endswith(".tmp")]


INTERRUPT_DURING_IMPORTS = textwrap.dedent("""
    import builtins, runpy
    real_import = builtins.__import__
    def interrupted(name, *args, **kwargs):
        if name == "torch":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)
    builtins.__import__ = interrupted
    runpy.run_module("fastdistill", run_name="__main__", alter_sys=True)
""")


def test_ctrl_c_during_imports_is_one_line():
    done = subprocess.run([sys.executable, "-c", INTERRUPT_DURING_IMPORTS, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 130
    assert done.stderr.strip().splitlines() == ["interrupted before the command started; nothing was written"]


def test_a_run_folder_held_by_another_process_is_refused_then_resumes(tmp_path, capsys):
    teacher, run = tmp_path / "teacher", tmp_path / "run"
    assert main(["squeeze", "--epochs", "1", "--output", str(teacher), "--device", "cpu", "--seed", "1"]) == 0
    argv = [*DELT, "--teacher", str(teacher), *COMMON, "--output", str(run)]
    assert main(argv) == 0
    assert not (run / ".lock").exists()  # released when the command ends
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom fastdistill.utils.lock import run_lock\n"
         f"with run_lock({str(run)!r}):\n    print('held', flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert main([*argv, "--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by pid {holder.pid}" in err[0]
    finally:
        holder.communicate("")
    assert main([*argv, "--resume"]) == 0


def test_a_folder_counts_as_a_run_only_once_it_holds_work(tmp_path):
    from fastdistill.commands.rundir import prepare_run_dir, release_run_dirs

    started = tmp_path / "started"
    (started / "progress").mkdir(parents=True)
    (started / "config.json").write_text("{}")  # stopped before its first unit of work was saved
    assert prepare_run_dir(str(started), "delt", resume=False) == started
    release_run_dirs()
    (started / "progress" / "selection.pt").write_bytes(b"x")
    with pytest.raises(FastDistillError, match="already holds a run"):
        prepare_run_dir(str(started), "delt", resume=False)
    release_run_dirs()
