"""``--resume`` checks the run's inputs by content (teacher weights, data root, diffusion model, MTT buffer), and a
``--resume`` of a finished run says it is complete and writes nothing."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fastdistill.cli import main

CPU = ["--device", "cpu"]
DELT = ["delt", "--ipc", "2", "--iterations", "2", "--round-iterations", "2", "--batch-size", "10", "--no-eval", *CPU]


def _interrupt(run: Path, *outputs: str) -> None:
    """Make a finished run look interrupted after its last unit: progress kept, final outputs gone."""
    for name in outputs:
        path = run / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _error(capsys) -> str:
    """The one line stderr shows on a terminal (progress bars redraw over themselves and are wiped)."""
    err = capsys.readouterr().err
    lines = [shown for line in err.split("\n") if (shown := line.rsplit("\r", 1)[-1]).strip()]
    assert len(lines) == 1, lines
    return lines[0]


def _squeeze(out: Path, seed: int, *extra: str) -> None:
    assert main(["squeeze", "--epochs", "1", "--output", str(out), "--seed", str(seed), *CPU, *extra]) == 0


def test_delt_resume_refuses_another_teacher_but_not_a_moved_copy(tmp_path, capsys):
    teacher, other, run = tmp_path / "teacher", tmp_path / "other", tmp_path / "run"
    _squeeze(teacher, 1)
    _squeeze(other, 2)
    assert main([*DELT, "--teacher", str(teacher), "--output", str(run)]) == 0
    recorded = json.loads((run / "config.json").read_text())["inputs"]
    assert len(recorded["teacher"]) == 64 and recorded["data"] == "built-in digits"
    _interrupt(run, "distilled.pt", "grid.png", "summary.json", "images")
    kept = {f.name: f.stat().st_mtime_ns for f in (run / "progress").iterdir()}
    capsys.readouterr()

    assert main([*DELT, "--teacher", str(other), "--output", str(run), "--resume"]) == 2
    line = _error(capsys)
    assert "--resume with a different teacher" in line and recorded["teacher"][:12] in line
    assert {f.name: f.stat().st_mtime_ns for f in (run / "progress").iterdir()} == kept
    assert not (run / "summary.json").exists()

    moved = tmp_path / "moved"
    shutil.copytree(teacher, moved)  # the same weights elsewhere: the same teacher
    assert main([*DELT, "--teacher", str(moved), "--output", str(run), "--resume"]) == 0
    assert (run / "summary.json").exists()


def test_resume_of_a_finished_run_reports_it_and_writes_nothing(tmp_path, capsys):
    teacher, run = tmp_path / "teacher", tmp_path / "run"
    _squeeze(teacher, 1)
    assert main([*DELT, "--teacher", str(teacher), "--output", str(run)]) == 0
    for folder in (teacher, run):
        argv = (["squeeze", "--epochs", "1", "--seed", "1", *CPU] if folder == teacher
                else [*DELT, "--teacher", str(teacher)])
        before = {f: f.stat().st_mtime_ns for f in folder.rglob("*") if f.is_file()}
        capsys.readouterr()
        assert main([*argv, "--output", str(folder), "--resume"]) == 0
        assert "already complete" in capsys.readouterr().out
        assert {f: f.stat().st_mtime_ns for f in folder.rglob("*") if f.is_file()} == before


def test_squeeze_resume_retrains_an_unfinished_run_and_checks_the_data_root(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "teacher"
    for split in ("train", "val"):
        for c, colour in (("cat", (200, 10, 10)), ("dog", (10, 10, 200))):
            (data / split / c).mkdir(parents=True)
            for k in range(3):
                Image.new("RGB", (10, 10), colour).save(data / split / c / f"{k}.png")
    argv = ["squeeze", "--dataset", "imagefolder", "--data-root", str(data), "--image-size", "8", "--epochs", "1",
            "--batch-size", "4", "--output", str(out), *CPU]
    assert main(argv) == 0
    _interrupt(out, "teacher.safetensors", "teacher.json")
    Image.new("RGB", (10, 10), (0, 0, 0)).save(data / "train" / "cat" / "new.png")
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    assert "--resume with a different data" in _error(capsys)
    (data / "train" / "cat" / "new.png").unlink()
    assert main([*argv, "--resume"]) == 0
    assert (out / "teacher.safetensors").exists()


def test_mtt_resume_refuses_another_buffer(tmp_path, capsys):
    buffers = [tmp_path / "buffer", tmp_path / "other"]
    for seed, folder in enumerate(buffers):
        assert main(["buffer", "--experts", "1", "--epochs", "2", "--arch", "convnet1", "--output", str(folder),
                     "--seed", str(seed), "--quiet", *CPU]) == 0
    run = tmp_path / "run"
    argv = ["distill", "--method", "mtt", "--ipc", "1", "--buffer", str(buffers[0]), "--arch", "convnet1",
            "--iterations", "1", "--syn-steps", "2", "--max-start-epoch", "1", "--expert-epochs", "1", "--no-eval",
            "--quiet", "--output", str(run), *CPU]
    assert main(argv) == 0
    _interrupt(run, "distilled.pt")
    shutil.copyfile(buffers[1] / "trajectories.pt", buffers[0] / "trajectories.pt")
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    assert "--resume with a different buffer" in _error(capsys)


@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="diffusers is not installed")
def test_mgd_resume_refuses_another_diffusion_model(tmp_path, capsys):
    models = [tmp_path / "pixel", tmp_path / "other"]
    for seed, folder in enumerate(models):
        assert main(["train-diffusion", "--steps", "2", "--batch-size", "8", "--width", "8", "--output", str(folder),
                     "--seed", str(seed), *CPU]) == 0
    run = tmp_path / "run"
    argv = ["mgd", "--diffusion", str(models[0]), "--ipc", "2", "--steps", "2", "--no-eval", "--output", str(run), *CPU]
    assert main(argv) == 0
    _interrupt(run, "distilled.pt")
    weights = "unet/diffusion_pytorch_model.safetensors"
    shutil.copyfile(models[1] / weights, models[0] / weights)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    assert "--resume with a different diffusion weights" in _error(capsys)


def test_delt_resume_after_distilling_only_evaluates_and_keeps_the_timings(tmp_path, capsys):
    teacher, run = tmp_path / "teacher", tmp_path / "run"
    _squeeze(teacher, 1)
    argv = [*DELT[:-3], *CPU, "--teacher", str(teacher), "--eval-seeds", "1", "--eval-epochs", "1",
            "--eval-protocols", "hard", "--output", str(run)]
    assert main([*argv, "--no-eval"]) == 0
    summary = (run / "summary.json").read_bytes()  # as if interrupted during its evaluation
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    assert "distillation already complete" in capsys.readouterr().out
    assert (run / "summary.json").read_bytes() == summary and (run / "results.json").exists()


def test_evaluate_resume_reuses_the_students_an_interrupted_evaluation_finished(tmp_path, capsys):
    teacher, run = tmp_path / "teacher", tmp_path / "run"
    _squeeze(teacher, 1)
    assert main([*DELT, "--teacher", str(teacher), "--output", str(run)]) == 0
    argv = ["evaluate", str(run), "--seeds", "1", "--epochs", "1", "--protocols", "hard", "--quiet", *CPU]
    assert main(argv) == 0
    kept = sorted((run / "progress" / "evaluate").iterdir())
    assert [f.name.split("-seed")[0] for f in kept] == ["hard-distilled", "hard-random_real"]
    first = json.loads((run / "results.json").read_text())["protocols"]["hard"]["distilled"]["mean"]
    kept[0].write_text(json.dumps({**json.loads(kept[0].read_text()), "top1": 123.0}))  # marks it as reused
    untouched = kept[1].stat().st_mtime_ns
    assert main([*argv, "--resume"]) == 0
    assert json.loads((run / "results.json").read_text())["protocols"]["hard"]["distilled"]["mean"] == 123.0
    assert kept[1].stat().st_mtime_ns == untouched
    assert main(argv) == 0  # without --resume every student is trained again
    assert json.loads((run / "results.json").read_text())["protocols"]["hard"]["distilled"]["mean"] == first
