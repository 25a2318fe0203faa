"""Bad invocations of every command, as a table: each exits with status 2, prints exactly one line on stderr (no
traceback), and leaves the folder it names (``--output``, a run to resume) absent or exactly as it was."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fastdistill.cli import main

CPU = ["--device", "cpu"]
TINY_DELT = ["delt", "--ipc", "2", "--iterations", "2", "--round-iterations", "2", "--batch-size", "10", *CPU]
HAS_DIFFUSERS = importlib.util.find_spec("diffusers") is not None


def _image_folder(root: Path, train: tuple[str, ...], val: tuple[str, ...], empty: str | None = None) -> str:
    for split, classes in (("train", train), ("val", val)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            if c != empty:
                for k in range(2):
                    Image.new("RGB", (10, 10), (40 * k, 90, 20)).save(root / split / c / f"{k}.png")
    return str(root)


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """Shared inputs: two tiny digits teachers, a finished DELT and squeeze run, image folders, a plain file, and a
    tiny pixel diffusion model when diffusers is installed."""
    base = tmp_path_factory.mktemp("faults")
    p = {"teacher": str(base / "teacher"), "other_teacher": str(base / "other"), "run": str(base / "run"),
         "squeezed": str(base / "teacher"), "file": str(base / "notes.txt"), "pixel": str(base / "pixel")}
    for name, seed in (("teacher", "1"), ("other_teacher", "2")):
        assert main(["squeeze", "--epochs", "1", "--output", p[name], *CPU, "--seed", seed]) == 0
    assert main([*TINY_DELT, "--teacher", p["teacher"], "--no-eval", "--output", p["run"]]) == 0
    Path(p["file"]).write_text("not a checkpoint\n")
    p["mismatch"] = _image_folder(base / "mismatch", ("cat", "dog"), ("cat", "owl"))
    p["empty_class"] = _image_folder(base / "empty", ("cat", "dog"), ("cat", "dog"), empty="dog")
    p["folder"] = _image_folder(base / "good", ("cat", "dog"), ("cat", "dog"))
    if HAS_DIFFUSERS:
        assert main(["train-diffusion", "--steps", "2", "--batch-size", "8", "--width", "8", "--output", p["pixel"],
                     *CPU]) == 0
    return p


PIXEL = ["mgd", "--diffusion", "{pixel}", "--ipc", "2", "--steps", "2", "--no-eval", *CPU]

# (argv, text the error line must contain, folder that must end absent or unchanged: "{out}" is a fresh path)
CASES = [
    # argument validation: every flag's type, choice and range, before anything runs
    (["delt", "--bogus"], "unrecognized arguments", "{out}"),
    (["delt", "--ipc", "0", "--output", "{out}"], "--ipc must be >= 1", "{out}"),
    (["delt", "--ipc", "two", "--output", "{out}"], "invalid int value", "{out}"),
    (["delt", "--lr", "nan", "--output", "{out}"], "--lr must be a finite number", "{out}"),
    (["delt", "--lr", "inf", "--output", "{out}"], "--lr must be a finite number", "{out}"),
    (["delt", "--lr", "-1", "--output", "{out}"], "--lr must be > 0", "{out}"),
    (["delt", "--milestone", "1.5", "--output", "{out}"], "--milestone must be <= 1", "{out}"),
    (["delt", "--crop", "spiral", "--output", "{out}"], "invalid choice", "{out}"),
    (["delt", "--dataset", "nope", "--output", "{out}"], "invalid choice", "{out}"),
    (["delt", "--config", "{out}/missing.yaml"], "file not found", "{out}"),
    (["delt", "--config", "recipe:nope", "--output", "{out}"], "no such shipped recipe", "{out}"),
    (["pdd", "--output", "{out}"], "--base is required", "{out}"),
    (["pdd", "--base", "dm", "--lr-img", "-5", "--output", "{out}"], "--lr-img must be > 0", "{out}"),
    (["pdd", "--base", "dm", "--lr-img", "inf", "--output", "{out}"], "finite", "{out}"),
    (["pdd", "--base", "dm", "--stages", "0", "--output", "{out}"], "--stages must be >= 1", "{out}"),
    (["distill", "--method", "xyz", "--output", "{out}"], "invalid choice", "{out}"),
    (["mgd", "--output", "{out}"], "--diffusion is required", "{out}"),
    (["mgd", "--diffusion", "{pixel}", "--stop-guidance", "5", "--output", "{out}"], "--stop-guidance must be <= 1",
     "{out}"),
    (["mgd", "--diffusion", "{pixel}", "--guidance-scale", "nan", "--output", "{out}"], "finite", "{out}"),
    (["squeeze", "--lr", "inf", "--output", "{out}"], "--lr must be a finite number", "{out}"),
    (["squeeze", "--epochs", "0", "--output", "{out}"], "--epochs must be >= 1", "{out}"),
    (["train-diffusion", "--lr", "nan", "--output", "{out}"], "finite", "{out}"),
    (["buffer", "--experts", "0", "--output", "{out}"], "--experts must be >= 1", "{out}"),
    (["evaluate"], "RUN_DIR is required", "{out}"),
    (["evaluate", "{run}", "--seeds", "0"], "--seeds must be >= 1", "{run}"),
    (["evaluate", "{run}", "--track-best", "-1"], "--track-best must be >= 0", "{run}"),
    (["convert-dit", "--output", "{out}"], "CHECKPOINT is required", "{out}"),
    (["relabel"], "RUN_DIR is required", "{out}"),
    (["relabel", "{run}", "--seeds", "0"], "--seeds must be >= 1", "{run}"),
    (["relabel", "{run}", "--logits-dtype", "int8"], "invalid choice", "{run}"),
    # checks of data, teacher, models and settings: before the first byte goes to --output
    (["squeeze", "--arch", "notanarch", "--epochs", "1", "--output", "{out}", *CPU], "unknown architecture", "{out}"),
    ([*TINY_DELT, "--teacher", "{teacher}", "--eval-protocols", "bogus", "--output", "{out}"], "--eval-protocols",
     "{out}"),
    ([*TINY_DELT, "--teacher", "{out}/none", "--output", "{out}"], "teacher weights not found", "{out}"),
    ([*TINY_DELT, "--teacher", "{file}", "--output", "{out}"], "teacher metadata", "{out}"),
    ([*TINY_DELT, "--ipc", "1000", "--output", "{out}"], "larger than the smallest class", "{out}"),
    ([*TINY_DELT, "--iterations", "5", "--output", "{out}"], "multiple of --round-iterations", "{out}"),
    ([*TINY_DELT, "--dataset", "imagefolder", "--output", "{out}"], "needs --data-root", "{out}"),
    ([*TINY_DELT, "--dataset", "imagefolder", "--data-root", "{out}/nope", "--output", "{out}"], "does not exist",
     "{out}"),
    (["squeeze", "--dataset", "imagefolder", "--data-root", "{mismatch}", "--image-size", "8", "--output", "{out}",
      *CPU], "only in train/: dog; only in val/: owl", "{out}"),
    (["squeeze", "--dataset", "imagefolder", "--data-root", "{empty_class}", "--image-size", "8", "--output", "{out}",
      *CPU], "empty/train/dog holds no images", "{out}"),
    (["pdd", "--base", "delt", "--output", "{out}", *CPU], "--base delt needs a teacher", "{out}"),
    (["distill", "--method", "mtt", "--buffer", "{out}/nobuffer", "--output", "{out}", *CPU], "buffer", "{out}"),
    (["mgd", "--diffusion", "{out}/missing", "--output", "{out}", *CPU], "is not a folder", "{out}"),
    ([*PIXEL, "--latent-cache", "{file}", "--output", "{out}"], "--latent-cache", "{out}"),
    ([*PIXEL, "--ipc", "1000", "--output", "{out}"], "--ipc 1000 is larger", "{out}"),
    ([*PIXEL, "--dataset", "imagefolder", "--data-root", "{folder}", "--output", "{out}"], "the generator", "{out}"),
    (["convert-dit", "{file}", "--output", "{out}"], "cannot be read", "{out}"),
    (["convert-dit", "{out}/none.pt", "--output", "{out}"], "not found", "{out}"),
    (["evaluate", "{out}"], "not found", "{out}"),
    (["evaluate", "{run}", "--protocols", "bogus"], "--protocols", "{run}"),
    (["evaluate", "{run}", "--soft-labels", "stored", *CPU], "no stored soft labels", "{run}"),
    (["relabel", "{out}"], "not found", "{out}"),
    (["relabel", "{run}", "--teacher", "{out}/none", *CPU], "teacher weights not found", "{run}"),
    (["relabel", "{run}", "--teacher", "{teacher}", "--output", "{file}", *CPU], "is a file", "{file}"),
    # run folders: occupied, missing, a file, empty name, resumed with other settings or inputs
    ([*TINY_DELT, "--resume"], "--resume needs --output", "{out}"),
    ([*TINY_DELT, "--teacher", "{teacher}", "--output", "{file}"], "is a file", "{file}"),
    ([*TINY_DELT, "--teacher", "{teacher}", "--output", ""], "--output is empty", "{out}"),
    ([*TINY_DELT, "--teacher", "{teacher}", "--no-eval", "--output", "{run}"], "already holds a run", "{run}"),
    ([*TINY_DELT, "--teacher", "{teacher}", "--resume", "--output", "{out}"], "holds no interrupted run", "{out}"),
    ([*TINY_DELT, "--teacher", "{teacher}", "--no-eval", "--ipc", "3", "--resume", "--output", "{run}"],
     "different settings (ipc: 2 -> 3)", "{run}"),
    ([*TINY_DELT, "--teacher", "{other_teacher}", "--no-eval", "--resume", "--output", "{run}"],
     "--resume with a different teacher", "{run}"),
    ([*TINY_DELT, "--no-eval", "--resume", "--output", "{run}"], "--resume with a different teacher", "{run}"),
    (["squeeze", "--resume", "--output", "{out}", *CPU], "holds no interrupted run", "{out}"),
    (["squeeze", "--epochs", "1", "--lr", "0.5", "--seed", "1", "--resume", "--output", "{squeezed}", *CPU],
     "different settings (lr: 0.05 -> 0.5)", "{squeezed}"),
    (["train-diffusion", "--resume", "--output", "{out}", *CPU], "holds no interrupted run", "{out}"),
    (["buffer", "--resume", "--output", "{out}", *CPU], "does not resume", "{out}"),
    (["relabel", "{run}", "--resume", *CPU], "holds no interrupted relabel", "{run}"),
]


def _state(path: Path) -> dict[str, int] | None:
    """Every file under ``path`` with its size and mtime (None if absent); folders' own mtimes are left out."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.stat().st_mtime_ns}
    return {str(f.relative_to(path)): (f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(path.rglob("*"))
            if f.is_file()}


@pytest.mark.parametrize(("argv", "expected", "watched"), CASES, ids=[" ".join(c[0])[:70] for c in CASES])
def test_bad_invocation(argv, expected, watched, paths, tmp_path, capsys):
    if argv[0] in ("mgd", "train-diffusion") and not HAS_DIFFUSERS:
        pytest.skip("diffusers is not installed")
    values = {**paths, "out": str(tmp_path / "out")}
    argv = [a.format(**values) for a in argv]
    folder = Path(watched.format(**values))
    before = _state(folder)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [shown for line in err.split("\n") if (shown := line.rsplit("\r", 1)[-1]).strip()]  # as a terminal
    # shows it: a progress bar redraws over itself (``\r``) and is wiped when it closes
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    assert _state(folder) == before
    if folder == tmp_path / "out":
        assert not folder.exists()


def test_the_table_is_large_enough():
    commands = {next(a for a in argv if not a.startswith("-")) for argv, _, _ in CASES}
    assert len(CASES) >= 40
    assert commands >= {"delt", "pdd", "distill", "mgd", "squeeze", "train-diffusion", "buffer", "evaluate",
                        "convert-dit", "relabel"}


def test_a_failed_check_leaves_nothing_so_the_corrected_command_runs(tmp_path, capsys):
    out = tmp_path / "teacher"
    assert main(["squeeze", "--arch", "notanarch", "--epochs", "1", "--output", str(out), *CPU]) == 2
    assert not out.exists()
    assert main(["squeeze", "--arch", "convnet3-bn", "--epochs", "1", "--output", str(out), *CPU]) == 0
    assert (out / "teacher.safetensors").exists()
    shutil.rmtree(out)


@pytest.mark.parametrize(("argv", "hint"), [(["convert-dit", "x.pt", "--output", "y"], "rerun the command"),
                                           (["evaluate", "run"], "rerun with --resume"),
                                           (["delt"], "rerun with --resume")])
def test_ctrl_c_says_how_to_continue(argv, hint, monkeypatch, capsys):
    module = importlib.import_module(f"fastdistill.commands.{argv[0].replace('-', '_')}")

    def interrupted(options):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    assert main(argv) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and hint in lines[0]
