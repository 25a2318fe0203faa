"""The DELT recover loop and pipeline: grouped launches equal sequential runs, backends agree, resume is exact."""

import pytest
import torch

import fastdistill.pipelines.delt.pipeline as delt_pipeline
from fastdistill.backends import triton_importable, triton_interpret
from fastdistill.cli import main
from fastdistill.data import load_dataset
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.delt.recover import recover
from fastdistill.methods.delt.schedule import GroupSchedule
from fastdistill.models import build_model
from fastdistill.models.teacher import save_teacher
from fastdistill.pipelines.outputs import load_distilled
from fastdistill.pipelines.squeeze import SqueezeConfig, train_teacher

BOUNDS = (torch.tensor([-1.5]), torch.tensor([2.0]))


def _teacher(seed=0):
    torch.manual_seed(seed)
    model = build_model("convnet3-bn", 5, 1, 8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval().requires_grad_(False)


def _cfg(**kw):
    base = dict(iterations=6, round_iterations=3, lr=0.05, r_bn=0.5, crop_floor=1.0, flip=False)
    return DELTConfig.for_dataset("toy", image_size=8, **{**base, **kw})


def test_grouped_launch_equals_sequential_groups():
    groups, per = 3, 4
    x0 = torch.randn(groups * per, 1, 8, 8, generator=torch.Generator().manual_seed(1)).clamp(-1.5, 2.0)
    labels = torch.randint(0, 5, (groups * per,), generator=torch.Generator().manual_seed(2))
    schedule = GroupSchedule(((0, 1), (0, 1, 2, 3)), 3)  # EarlyLate: rows 2, 3 join in round 1
    cfg = _cfg()
    together = recover(x0, labels, groups, schedule, _teacher(), cfg, BOUNDS, torch.Generator(), progress=False)
    for g in range(groups):
        rows = slice(g * per, (g + 1) * per)
        alone = recover(x0[rows], labels[rows], 1, schedule, _teacher(), cfg, BOUNDS, torch.Generator(),
                        progress=False)
        torch.testing.assert_close(together[rows], alone, rtol=1e-5, atol=1e-5)
    assert not torch.equal(together, x0)
    assert not torch.equal(together[2], x0[2])  # late joiners were optimised in round 1
    assert float(together.min()) >= -1.5 and float(together.max()) <= 2.0


def test_rows_not_yet_joined_stay_untouched():
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)).clamp(-1.5, 2.0)
    labels = torch.tensor([0, 1, 2, 3])
    schedule = GroupSchedule(((0, 1),), 3)  # rows 2, 3 never join in this (truncated) schedule
    out = recover(x0, labels, 1, schedule, _teacher(), _cfg(iterations=3), BOUNDS, torch.Generator(), progress=False)
    assert torch.equal(out[2:], x0[2:]) and not torch.equal(out[:2], x0[:2])


@pytest.mark.interpret
@pytest.mark.skipif(not (triton_importable() and triton_interpret()), reason="needs the Triton interpreter")
def test_triton_and_torch_backends_give_the_same_images():
    x0 = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(4)).clamp(-1.5, 2.0)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    schedule = GroupSchedule(((0,), (0, 1, 2)), 1)
    outs = [recover(x0, labels, 2, schedule, _teacher(), _cfg(iterations=2, round_iterations=1, backend=b), BOUNDS,
                    torch.Generator().manual_seed(0), progress=False) for b in ("torch", "triton")]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)
    assert not torch.equal(outs[0], x0)


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory):
    ds = load_dataset("digits")
    model, _ = train_teacher(ds, SqueezeConfig(epochs=3), torch.device("cpu"), progress=False)
    return str(save_teacher(tmp_path_factory.mktemp("teacher"), model, "convnet3-bn", ds.info))


def _delt(out, teacher, *extra):
    return main(["delt", "--teacher", teacher, "--ipc", "2", "--batch-size", "5", "--groups-per-launch", "1",
                 "--iterations", "4", "--round-iterations", "2", "--output", str(out), "--no-eval", *extra])


def test_resume_skips_finished_groups_and_matches(tmp_path, digits_teacher, monkeypatch):
    assert _delt(tmp_path / "full", digits_teacher) == 0
    full = load_distilled(tmp_path / "full")
    assert full["images"].shape == (20, 1, 8, 8) and torch.equal(full["labels"], torch.arange(10).repeat_interleave(2))
    assert len(list((tmp_path / "full" / "images").iterdir())) == 10
    for name in ("config.json", "grid.png", "summary.json"):
        assert (tmp_path / "full" / name).exists()

    # an "interrupted" run: two of its four groups finished, outputs not yet written
    assert _delt(tmp_path / "part", digits_teacher) == 0
    for f in ("distilled.pt", "grid.png", "summary.json"):
        (tmp_path / "part" / f).unlink()
    for gid in (2, 3):
        (tmp_path / "part" / "progress" / f"group_{gid:05d}.pt").unlink()
    calls = []
    original = delt_pipeline.recover
    monkeypatch.setattr(delt_pipeline, "recover", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert _delt(tmp_path / "part", digits_teacher, "--resume") == 0
    assert len(calls) == 2  # only the unfinished groups ran again
    assert torch.equal(load_distilled(tmp_path / "part")["images"], full["images"])


def test_resume_refuses_changed_settings(tmp_path, digits_teacher, capsys):
    assert _delt(tmp_path / "run", digits_teacher) == 0
    assert _delt(tmp_path / "run", digits_teacher, "--resume", "--lr", "0.3") == 2
    assert "different settings" in capsys.readouterr().err


def test_compat_mode_writes_jpeg(tmp_path, digits_teacher):
    assert _delt(tmp_path / "c", digits_teacher, "--mode", "compat") == 0
    files = sorted((tmp_path / "c" / "images").rglob("*.jpg"))
    assert len(files) == 20
    assert load_distilled(tmp_path / "c")["images"].dtype == torch.uint8
