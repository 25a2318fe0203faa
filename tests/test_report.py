"""``fastdistill report`` and what it reads: per-class accuracy and training curves recorded by the harness, the
single-run report every pipeline writes, a self-contained HTML, report.md's PNGs, the side-by-side table of several
runs, sections present vs "not measured", and the report without matplotlib."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn

from fastdistill.cli import main
from fastdistill.data import load_dataset
from fastdistill.data.base import Split
from fastdistill.eval import StudentTrainer, make_protocol
from fastdistill.models.accuracy import accuracy, class_accuracy
from fastdistill.report import HTML, MARKDOWN, REPORT_DIR, grid, plots, write_report, write_run_report
from fastdistill.report.runs import accuracy_entries

CPU = ["--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A real tiny DELT run (hard and soft students, 1 epoch, 1 seed) and a one-stage DM run (hard only)."""
    root = tmp_path_factory.mktemp("report")
    teacher = root / "teacher"
    assert main(["squeeze", "--epochs", "1", "--output", str(teacher), *CPU, "--seed", "1"]) == 0
    assert main(["delt", "--teacher", str(teacher), "--ipc", "2", "--iterations", "2", "--round-iterations", "1",
                 "--batch-size", "10", "--eval-seeds", "1", "--eval-epochs", "1", "--output", str(root / "delt"),
                 *CPU]) == 0
    assert main(["distill", "--method", "dm", "--ipc", "2", "--iterations", "2", "--quiet", "--eval-seeds", "1",
                 "--eval-epochs", "1", "--output", str(root / "dm"), *CPU]) == 0
    return root


class _Refs(HTMLParser):
    """Every tag name and every attribute that can point at another resource."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data", "poster", "action")]


def _self_contained(html: str) -> list[str]:
    """The images embedded in ``html``; fails on any reference to another file, script, font or style sheet."""
    parser = _Refs()
    parser.feed(html)
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(parser.tags)
    assert all(ref.startswith("data:image/png;base64,") for ref in parser.refs), parser.refs
    assert "url(" not in html and "@import" not in html and "@font-face" not in html
    images = [ref.split(",", 1)[1] for ref in parser.refs]
    assert all(base64.b64decode(data).startswith(PNG) for data in images)
    return images


def _md_images(folder: Path) -> list[str]:
    files = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (folder / MARKDOWN).read_text())
    for name in files:
        assert "/" not in name and (folder / name).read_bytes().startswith(PNG), name
    return files


# --- what the harness records ---------------------------------------------------------------------------------------

def test_class_accuracy_matches_a_direct_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    images, labels = torch.randn(37, 3, 2, 2), torch.tensor([0, 1, 3] * 12 + [1])  # class 2 absent
    top1, per_class = class_accuracy(model, images, labels, lambda x: x, 8, 4)
    predicted = model(images).argmax(1)
    assert top1 == accuracy(model, images, labels, lambda x: x, 5)
    assert per_class[2] is None
    for c in (0, 1, 3):
        chosen = labels == c
        assert per_class[c] == pytest.approx(100.0 * (predicted[chosen] == c).sum().item() / chosen.sum().item())


def test_trainer_records_the_loss_of_every_epoch_across_fits():
    ds = load_dataset("digits")
    small = Split(ds.train.images[:40], ds.train.labels[:40])
    trainer = StudentTrainer(ds.info, make_protocol("hard", ds.info, 40, epochs=2), seed=0)
    last = trainer.fit(small.images, small.labels)
    trainer.fit(small.images, small.labels, epochs=1, eval_on=small, eval_every=1)
    assert len(trainer.losses) == 3 and trainer.losses[1] == last
    assert [e for e, _ in trainer.history] == [3]


def test_results_hold_per_class_accuracy_and_curves(runs):
    results = json.loads((runs / "delt" / "results.json").read_text())
    for kind in ("hard", "soft"):
        for which in ("distilled", "random_real"):
            run = results["protocols"][kind][which]["runs"][0]
            assert len(run["per_class_top1"]) == 10 and len(run["curve"]["loss"]) == 1
            counts = torch.bincount(load_dataset("digits").test.labels, minlength=10).tolist()
            correct = sum((a or 0) * n / 100 for a, n in zip(run["per_class_top1"], counts, strict=True))
            assert correct == pytest.approx(run["top1"] * sum(counts) / 100, abs=1e-3)


def test_progressive_results_are_labelled_with_their_rows():
    def harness(stages, epochs, steps):
        summary = {"mean": 50.0, "std": 0.0, "runs": [{"seed": 0, "top1": 50.0, "epochs": epochs, "steps": steps}]}
        return {"stages": stages, "protocols": {"hard": {"protocol": {"kind": "hard", "epochs": 1},
                                                         "student": "convnet3", "distilled": summary,
                                                         "random_real": summary}}}

    rows = [{"name": "progressive, 2x1 ep", "epochs": 2, "steps": 2}, {"name": "union, 2 ep", "epochs": 2, "steps": 2},
            {"name": "union, equal steps (2 ep)", "epochs": 2, "steps": 2}, {"name": "union, 1 ep", "epochs": 1,
                                                                              "steps": 1}]
    results = {"protocol": "hard", "arch": "convnet3", "rows": rows,
               "harness": {"1/2": harness(2, 2, 2), "2/1": harness(1, 2, 2), "1/1": harness(1, 1, 1)}}
    entries = accuracy_entries(results)
    assert [e.label for e in entries] == ["progressive, 2x1 ep", "union, 2 ep = union, equal steps (2 ep)",
                                          "union, 1 ep"]
    assert [e.headline for e in entries] == [True, False, False] and entries[0].key == "hard convnet3"


# --- the report -----------------------------------------------------------------------------------------------------

def test_every_pipeline_run_gets_its_report(runs):
    for name in ("delt", "dm"):
        folder = runs / name / REPORT_DIR
        html = (folder / HTML).read_text()
        embedded = _self_contained(html)
        files = _md_images(folder)
        assert "grid.png" in files and len(embedded) == len(files)
    md = (runs / "delt" / REPORT_DIR / MARKDOWN).read_text()
    assert "# fastdistill report: DELT on digits, IPC 2" in md
    assert "| hard | hard | convnet3 | 1 | 1 |" in md and "| soft | soft | convnet3-bn | 1 | 1 |" in md
    assert "Diversity: not measured." not in md  # the run's teacher gives the features
    assert "| student | protocol | hlr | ior | lrs | ars |" in md and "| convnet3-bn | soft |" in md
    dm = (runs / "dm" / REPORT_DIR / MARKDOWN).read_text()
    assert "Diversity: not measured." in dm  # DM has no teacher
    assert "| dsa_strategy |" in md  # the protocol's settings


def test_plots_are_drawn_with_matplotlib(runs):
    pytest.importorskip("matplotlib")
    files = _md_images(runs / "delt" / REPORT_DIR)
    assert {"per-class-accuracy-hard-convnet3.png", "per-class-accuracy-soft-convnet3-bn.png",
            "curves-hard-convnet3.png", "curves-soft-convnet3-bn.png"} <= set(files)


def test_two_runs_give_a_side_by_side_table(runs, tmp_path, capsys):
    out = tmp_path / "both"
    assert main(["report", str(runs / "delt"), str(runs / "dm"), "--output", str(out)]) == 0
    assert str(out / HTML) in capsys.readouterr().out
    md = (out / MARKDOWN).read_text()
    side = md.split("## Side by side", 1)[1].split("\n## ", 1)[0]
    header, _, delt, dm = [line for line in side.splitlines() if line.startswith("|")][:4]
    assert "hard convnet3: distilled / random real" in header and "soft convnet3-bn" in header
    assert delt.startswith("| delt | DELT | digits | 2 |") and dm.startswith("| dm | DM | digits | 2 |")
    assert dm.rstrip(" |").endswith("not measured")  # the DM run has no soft-label students
    assert "## DELT on digits, IPC 2 (delt)" in md and "## DM on digits, IPC 2 (dm)" in md
    files = _md_images(out)
    assert {"run1-grid.png", "run2-grid.png"} <= set(files)
    assert len(_self_contained((out / HTML).read_text())) == len(files)


def test_richer_results_render_their_sections(runs, tmp_path):
    run = tmp_path / "rich"
    shutil.copytree(runs / "delt", run, ignore=shutil.ignore_patterns("images", "progress", REPORT_DIR))
    results = json.loads((run / "results.json").read_text())
    per = {"distilled": [0.2 + 0.01 * c for c in range(10)], "random_real": [0.3] * 9 + [None]}
    results["diversity"] = {"feature_model": "teacher", **{
        which: {"intra_class_cosine": {"mean": 0.25, "std": 0.02, "per_class": per[which]}, "mgd_diversity": 0.4,
                "representativeness": 0.7} for which in per}}
    results["ddranking"] = {"hlr": 0.1, "ior": 0.02, "lrs": 0.31, "ars": 0.33, "real_hard": 0.95}
    results["protocol"] = {"name": "delt", "epochs": 1, "best_of": False}
    (run / "results.json").write_text(json.dumps(results))
    write_report([run], tmp_path / "out")
    md = (tmp_path / "out" / MARKDOWN).read_text()
    assert "not measured" not in md
    assert "| intra-class cosine (mean pairwise; lower = more diverse) | 0.2500 ± 0.0200 | 0.2500 ± 0.0200 |" in md
    assert "| lrs | 0.3100 |" in md and "| name | delt |" in md and "feature model: teacher" in md
    if plots.available():
        assert "diversity-intra-class-cosine.png" in _md_images(tmp_path / "out")


def test_without_matplotlib_tables_and_grids_remain(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    write_report([runs / "delt"], tmp_path)
    md = (tmp_path / MARKDOWN).read_text()
    assert "pip install fastdistill[report]" in md and _md_images(tmp_path) == ["grid.png"]
    assert "| hard | hard | convnet3 |" in md


def test_a_failing_plot_costs_that_plot_only(runs, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")

    def broken(*args):
        raise RuntimeError("no canvas")

    monkeypatch.setattr(plots, "per_class", broken)
    write_report([runs / "delt"], tmp_path)
    md = (tmp_path / MARKDOWN).read_text()
    assert "plot not drawn (RuntimeError: no canvas)" in md and "curves-hard-convnet3.png" in md


def test_a_failing_report_never_fails_the_run(runs, tmp_path, capsys):
    shutil.copytree(runs / "dm", tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / REPORT_DIR)
    (tmp_path / "run" / REPORT_DIR).write_text("a file in the way")
    assert write_run_report(tmp_path / "run") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: no report written") and "fastdistill report" in err[0]


def test_a_run_without_results_or_grid_says_what_is_missing(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "delt", "config": {"dataset": "digits", "ipc": 3}}))
    write_report([run], tmp_path / "out")
    md = (tmp_path / "out" / MARKDOWN).read_text()
    for what in ("Image grid", "Accuracy", "Per-class accuracy", "Diversity", "DD-Ranking scores", "Training curves"):
        assert f"{what}: not measured" in md


def test_a_grid_too_large_to_embed_shows_the_first_classes(runs, tmp_path, monkeypatch):
    assert grid.classes_that_fit(224, 10, 1000) == 15 and grid.classes_that_fit(8, 10, 10) == 10
    monkeypatch.setattr(grid, "MAX_PIXELS", 3 * 66 * 66 * 2)  # three rows of two 8x8 digits drawn at 64 px
    write_report([runs / "delt"], tmp_path)
    md = (tmp_path / MARKDOWN).read_text()
    assert "The grid shows the first 3 of 10 classes" in md
    assert (tmp_path / "grid.png").read_bytes() != (runs / "delt" / "grid.png").read_bytes()


@pytest.mark.parametrize("argv, expected", [
    (["report", "{tmp}/missing", "--output", "{tmp}/out"], "run folder {tmp}/missing not found"),
    (["report", "{tmp}", "--output", "{tmp}/out"], "holds no fastdistill run"),
    (["report", "{tmp}"], "--output is required"),
    (["report", "{tmp}/run", "--output", "{tmp}/run"], "is a run folder; write the report into another folder"),
])
def test_report_errors(tmp_path, capsys, argv, expected):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected.format(tmp=tmp_path) in err[0], err
    assert not (tmp_path / "out").exists()
