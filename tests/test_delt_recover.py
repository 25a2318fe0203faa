"""The DELT recover loop and pipeline: grouped launches equal sequential runs, backends agree, resume is exact."""

import pytest
import torch

import fastdistill.pipelines.delt.pipeline as delt_pipeline
from fastdistill.backends import triton_importable, triton_interpret
from fastdistill.cli import main
from fastdistill.data import load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.delt.launch_memory import memory_budget, parse_bytes, run_launches
from fastdistill.methods.delt.planning import Group
from fastdistill.methods.delt.recover import recover
from fastdistill.methods.delt.schedule import GroupSchedule
from fastdistill.models import build_model
from fastdistill.models.teacher import save_teacher
from fastdistill.pipelines.outputs import load_distilled
from fastdistill.pipelines.squeeze import SqueezeConfig, train_teacher
from fastdistill.utils.io import read_json

BOUNDS = (torch.tensor([-1.5]), torch.tensor([2.0]))


def _teacher(seed=0):
    torch.manual_seed(seed)
    model = build_model("convnet3-bn", 5, 1, 8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval().requires_grad_(False)


def _gens(groups, first=0):
    """One generator per group, seeded by the group's index (as the pipeline seeds them by group id)."""
    return [torch.Generator().manual_seed(first + g) for g in range(groups)]


def _cfg(**kw):
    base = dict(iterations=6, round_iterations=3, lr=0.05, r_bn=0.5, crop_floor=1.0, flip=False)
    return DELTConfig.for_dataset("toy", image_size=8, **{**base, **kw})


@pytest.mark.parametrize("augment", [{}, {"crop_floor": 0.3, "flip": True, "jitter": 2}], ids=["plain", "augmented"])
def test_grouped_launch_equals_sequential_groups(augment):
    """Groups are independent (own BN statistics, CE, Adam rows, and augmentation generator): a launch of three
    groups gives each group the images it gets alone, so the launch size never changes the result."""
    groups, per = 3, 4
    x0 = torch.randn(groups * per, 1, 8, 8, generator=torch.Generator().manual_seed(1)).clamp(-1.5, 2.0)
    labels = torch.randint(0, 5, (groups * per,), generator=torch.Generator().manual_seed(2))
    schedule = GroupSchedule(((0, 1), (0, 1, 2, 3)), 3)  # EarlyLate: rows 2, 3 join in round 1
    cfg = _cfg(**augment)
    together = recover(x0, labels, groups, schedule, _teacher(), cfg, BOUNDS, _gens(groups), progress=False)
    for g in range(groups):
        rows = slice(g * per, (g + 1) * per)
        alone = recover(x0[rows], labels[rows], 1, schedule, _teacher(), cfg, BOUNDS, _gens(1, g), progress=False)
        torch.testing.assert_close(together[rows], alone, rtol=1e-5, atol=1e-5)
    assert not torch.equal(together, x0)
    assert not torch.equal(together[2], x0[2])  # late joiners were optimised in round 1
    assert float(together.min()) >= -1.5 and float(together.max()) <= 2.0


def test_rows_not_yet_joined_stay_untouched():
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)).clamp(-1.5, 2.0)
    labels = torch.tensor([0, 1, 2, 3])
    schedule = GroupSchedule(((0, 1),), 3)  # rows 2, 3 never join in this (truncated) schedule
    out = recover(x0, labels, 1, schedule, _teacher(), _cfg(iterations=3), BOUNDS, _gens(1), progress=False)
    assert torch.equal(out[2:], x0[2:]) and not torch.equal(out[:2], x0[:2])


@pytest.mark.interpret
@pytest.mark.skipif(not (triton_importable() and triton_interpret()), reason="needs the Triton interpreter")
def test_triton_and_torch_backends_give_the_same_images():
    x0 = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(4)).clamp(-1.5, 2.0)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    schedule = GroupSchedule(((0,), (0, 1, 2)), 1)
    outs = [recover(x0, labels, 2, schedule, _teacher(), _cfg(iterations=2, round_iterations=1, backend=b), BOUNDS,
                    _gens(2), progress=False) for b in ("torch", "triton")]
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
    assert _delt(tmp_path / "c", digits_teacher, "--mode", "compat", "--precision", "bf16", "--channels-last") == 0
    config = read_json(tmp_path / "c" / "config.json")
    assert config["config"]["precision"] == "bf16" and config["config"]["channels_last"] is True
    files = sorted((tmp_path / "c" / "images").rglob("*.jpg"))
    assert len(files) == 20
    assert load_distilled(tmp_path / "c")["images"].dtype == torch.uint8


def _toy_recover(**kw):
    x0 = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(6)).clamp(-1.5, 2.0)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    losses = []
    cfg = _cfg(crop_floor=0.5, flip=True, **kw)
    out = recover(x0, labels, 2, GroupSchedule(((0, 1), (0, 1, 2, 3)), 3), _teacher(), cfg, BOUNDS, _gens(2),
                  on_iteration=lambda t, v: losses.append(v), progress=False)
    return x0, out, torch.tensor(losses)


def test_bf16_and_channels_last_recover_match_fp32():
    """--precision bf16 (autocast teacher; images, Adam state, BN statistics and losses fp32) and --channels-last
    against fp32. Tolerances: channels-last is the same arithmetic in another order (1e-4); bf16 keeps 8 mantissa
    bits, so each iteration's loss within 1%, the images' final change within 5% (mean absolute difference over mean
    absolute change) and every pixel within one step of lr."""
    x0, ref, ref_losses = _toy_recover()
    _, cl, cl_losses = _toy_recover(channels_last=True)
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cl_losses, ref_losses, rtol=1e-4, atol=1e-5)
    for channels_last in (False, True):
        _, bf16, bf16_losses = _toy_recover(precision="bf16", channels_last=channels_last)
        assert bf16.dtype == torch.float32
        torch.testing.assert_close(bf16_losses, ref_losses, rtol=1e-2, atol=1e-3)  # measured: 5e-5
        assert float((bf16 - ref).abs().mean()) < 0.05 * float((ref - x0).abs().mean())  # measured: 2e-4
        assert float((bf16 - ref).abs().max()) < 0.05  # one step of lr; measured: 4e-4


def _launch_run(out, teacher, *extra):
    """Five groups of four images (two classes each) that share one schedule: one launch may hold all five."""
    assert main(["delt", "--teacher", teacher, "--ipc", "2", "--batch-size", "4", "--iterations", "4",
                 "--round-iterations", "2", "--crop-floor", "0.3", "--output", str(out), "--no-eval", *extra]) == 0
    return load_distilled(out)["images"], read_json(out / "summary.json")


def test_launch_size_never_changes_the_images(tmp_path, digits_teacher, monkeypatch):
    """One group per launch, memory-sized launches (all five fit), a forced small budget (two fit) and launches
    halved after injected out-of-memory errors all give the same images."""
    one, s_one = _launch_run(tmp_path / "one", digits_teacher, "--groups-per-launch", "1")
    assert s_one["launches"] == 5 and s_one["launch_memory"] is None
    auto, s_auto = _launch_run(tmp_path / "auto", digits_teacher)
    sizing = s_auto["launch_memory"]
    assert s_auto["launches"] == 1 and sizing["groups_per_launch"] == 5 and sizing["bytes_per_image"] > 0
    assert torch.equal(auto, one)

    monkeypatch.setenv("FASTDISTILL_LAUNCH_MEMORY", str(int(2.5 * 4 * sizing["bytes_per_image"])))
    small, s_small = _launch_run(tmp_path / "small", digits_teacher)
    assert s_small["launch_memory"]["groups_per_launch"] == 2 and s_small["launches"] == 3
    assert torch.equal(small, one)
    monkeypatch.delenv("FASTDISTILL_LAUNCH_MEMORY")

    original, sizes = delt_pipeline.recover, []

    def out_of_memory_above_two(x0, labels, groups, *args, **kwargs):
        sizes.append(groups)
        if groups > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return original(x0, labels, groups, *args, **kwargs)

    monkeypatch.setattr(delt_pipeline, "recover", out_of_memory_above_two)
    halved, s_halved = _launch_run(tmp_path / "halved", digits_teacher)
    assert sizes == [5, 3, 2, 1, 2] and s_halved["launch_halved_to"] == [3, 2] and s_halved["launches"] == 3
    assert torch.equal(halved, one)


def test_memory_budget_and_halving_units(monkeypatch):
    assert [parse_bytes(v) for v in ("1024", "64M", "1.5G", "2kb")] == [1024, 64 << 20, 3 << 29, 2048]
    with pytest.raises(FastDistillError, match="FASTDISTILL_LAUNCH_MEMORY"):
        parse_bytes("lots")
    monkeypatch.setenv("FASTDISTILL_LAUNCH_MEMORY", "3M")
    assert memory_budget(torch.device("cpu")) == 3 << 20
    monkeypatch.delenv("FASTDISTILL_LAUNCH_MEMORY")
    assert 0 < memory_budget(torch.device("cpu"))

    def fake_groups(n):
        return [Group(i, [0], [0], torch.tensor([i]), GroupSchedule(((0,),), 1)) for i in range(n)]

    groups, ran = fake_groups(3), []

    def run(launch):
        if len(launch) > 1:
            raise torch.cuda.OutOfMemoryError("injected")
        ran.append(launch[0].gid)

    run_launches([groups], run)
    assert ran == [0, 1, 2]
    with pytest.raises(FastDistillError, match="does not fit in device memory"):
        run_launches([fake_groups(1)], lambda launch: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("x")))
