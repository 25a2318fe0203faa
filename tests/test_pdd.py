"""PDD engine and its base methods (DM, DC, DSA, MTT) on tiny shapes."""

from __future__ import annotations

import pytest
import torch

from fastdistill.augment.dsa import DSAConfig, dsa_strategy_for
from fastdistill.cli import main
from fastdistill.data import load_dataset
from fastdistill.eval.progressive import evaluate_progressive
from fastdistill.eval.protocols import make_protocol
from fastdistill.eval.trainer import StudentTrainer
from fastdistill.methods import RealData, build_method
from fastdistill.methods.dm import DM, dm_loss
from fastdistill.methods.functional import FlatModel
from fastdistill.methods.gradmatch import gradient_distance, per_class_weight_grads
from fastdistill.methods.mtt import lean_meta_gradient, param_loss, plan_steps, unroll
from fastdistill.methods.presets import resolve
from fastdistill.methods.reference import dc_match_reference, distance_wb, dm_loss_reference
from fastdistill.methods.siamese import siamese_per_class
from fastdistill.methods.synset import StageImages
from fastdistill.models.convnet import ConvNet
from fastdistill.pipelines.outputs import load_distilled
from fastdistill.pipelines.pdd.engine import CHECKPOINT, ProgressiveRun
from fastdistill.utils.io import torch_load
from fastdistill.utils.seed import generator

TINY = {"arch": "convnet1", "batch_real": 8, "pool": 2, "cond_epochs": 1, "iterations": 4, "checkpoint_every": 2}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def real(digits):
    return RealData(digits.train, digits.info, "cpu")


def _run(real, run_dir, method="dm", stages=2, ipc=2, seed=0, **overrides):
    cfg = resolve(method, "digits", ipc, stages, {**TINY, **overrides})
    g = generator(seed)
    return ProgressiveRun(build_method(cfg, real, g), real, cfg, run_dir, g, progress=False)


def _flat_net(seed=0, classes=10, image=8, width=8, dtype=torch.float32):
    torch.manual_seed(seed)
    return FlatModel(ConvNet(1, classes, image, depth=2, width=width).to(dtype))


# --- progressive engine -------------------------------------------------------------------------------------------

def test_earlier_stages_are_bit_for_bit_unchanged(real, tmp_path):
    frozen_seen = []
    run = _run(real, tmp_path, stages=3, ipc=3)
    step = run.method.step

    def watching_step(images):
        frozen_seen.append((images.frozen.shape[1], images.frozen.clone()))
        out = step(images)
        assert torch.equal(images.frozen, frozen_seen[-1][1])  # not even touched in place
        return out

    run.method.step = watching_step
    record = run.run()
    stage = record["stage"]
    for s in (1, 2, 3):
        saved = load_distilled(tmp_path / f"stage{s}")
        assert torch.equal(saved["images"], record["images"][stage == s])
        assert torch.equal(saved["labels"], record["labels"][stage == s])
    # what stage 3 saw of stages 1-2 is exactly what stages 1-2 saved
    k_old, frozen = frozen_seen[-1]
    assert k_old == 2
    pixels = torch.round(real.info.denormalize(frozen).clamp(0, 1) * 255).to(torch.uint8)
    for s in (1, 2):
        assert torch.equal(pixels[:, s - 1:s].flatten(0, 1), record["images"][stage == s])


def test_union_sizes_per_stage(real, tmp_path):
    sizes = []
    run = _run(real, tmp_path, stages=2, ipc=4)
    step = run.method.step
    run.method.step = lambda images: sizes.append(images.union().shape[:2]) or step(images)
    record = run.run()
    assert sizes[0] == (10, 2) and sizes[-1] == (10, 4)
    stage = record["stage"]
    assert [(stage == s).sum().item() for s in (1, 2)] == [20, 20]
    for s in (1, 2):
        assert torch.equal(torch.bincount(record["labels"][stage <= s]), torch.full((10,), 2 * s))
    assert len(list((tmp_path / "images").rglob("*_stage2.png"))) == 20
    assert (tmp_path / "stage1" / "grid.png").exists() and (tmp_path / "stage2" / "grid.png").exists()


@pytest.mark.parametrize("where", ["distill", "transition"])
def test_resume_after_interruption_equals_uninterrupted(real, tmp_path, where):
    full = _run(real, tmp_path / "full").run()
    run = _run(real, tmp_path / "cut")
    calls = {"n": 0}
    if where == "distill":  # stage 2, iteration 3: the last checkpoint is at iteration 2
        step = run.method.step

        def interrupted(images):
            calls["n"] += 1
            if calls["n"] == 7:
                raise KeyboardInterrupt
            return step(images)

        run.method.step = interrupted
    else:
        def interrupted(*args):
            raise KeyboardInterrupt

        run.method.transition = interrupted
    with pytest.raises(KeyboardInterrupt):
        run.run()
    resumed = _run(real, tmp_path / "cut")
    assert resumed.load_checkpoint()
    assert resumed.phase == where and (resumed.stage == 2 if where == "distill" else resumed.stage == 1)
    out = resumed.run()
    assert torch.equal(out["images"], full["images"])
    frozen = [torch_load(tmp_path / name / CHECKPOINT)["frozen"] for name in ("cut", "full")]
    assert torch.equal(*frozen)


def test_one_stage_is_the_base_method(real, tmp_path):
    record = _run(real, tmp_path, stages=1, ipc=2).run()
    assert record["stage"].tolist() == [1] * 20
    assert not (tmp_path / "stage1").exists()


# --- DM -----------------------------------------------------------------------------------------------------------

def test_dm_loss_equals_the_formula(real):
    fm = _flat_net()
    flat = fm.flatten()
    g = generator(1)
    x_real = real.per_class(6, g)
    syn = real.init_images(3, g).clone().requires_grad_(True)
    batched = dm_loss(fm.features(flat, x_real.flatten(0, 1)).view(10, 6, -1),
                      fm.features(flat, syn.flatten(0, 1)).view(10, 3, -1))
    per_class = dm_loss_reference(fm.model, list(x_real), list(syn))  # fm.model holds exactly ``flat``
    torch.testing.assert_close(batched, per_class, rtol=1e-5, atol=1e-6)
    g_batched, = torch.autograd.grad(batched, syn)
    g_loop, = torch.autograd.grad(per_class, syn)
    torch.testing.assert_close(g_batched, g_loop, rtol=1e-4, atol=1e-6)
    assert batched > 0


def test_dm_step_moves_only_the_new_images(real):
    cfg = resolve("dm", "digits", 2, 1, TINY)
    g = generator(0)
    method = build_method(cfg, real, g)
    assert isinstance(method, DM)
    frozen = real.init_images(1, g)
    images = StageImages(frozen, real.init_images(1, g), real.info, lr=10.0, momentum=0.5)
    before = images.new.detach().clone()
    method.step(images)
    assert torch.equal(images.frozen, frozen)
    assert not torch.equal(images.new, before)
    lo, hi = real.info.bounds()
    assert images.new.min() >= lo.min() - 1e-6 and images.new.max() <= hi.max() + 1e-6


# --- DC / DSA -----------------------------------------------------------------------------------------------------

def _dc_formula(gs: torch.Tensor, gr: torch.Tensor) -> torch.Tensor:
    """DC's ``distance_wb`` for one layer, written out row by row."""
    if gs.dim() == 1:
        return torch.zeros(())
    gs, gr = gs.reshape(gs.shape[0], -1), gr.reshape(gr.shape[0], -1)
    total = torch.zeros(())
    for i in range(gs.shape[0]):
        total = total + 1 - (gs[i] @ gr[i]) / (gs[i].norm() * gr[i].norm() + 1e-6)
    return total


def test_dc_layer_distance_equals_the_formula():
    g = generator(5)
    for shape in [(4, 3, 3, 3), (10, 7), (6,)]:
        a, b = (torch.randn(shape, generator=g) for _ in range(2))
        torch.testing.assert_close(distance_wb(a, b), _dc_formula(a, b))
        assert distance_wb(a, a) < 1e-5 and (len(shape) == 1 or distance_wb(a, -a) > shape[0])


def test_dc_distance_equals_the_per_class_reference(real):
    fm = _flat_net(width=4)
    flat = fm.flatten()
    g = generator(2)
    x_real = real.per_class(5, g)
    syn = real.init_images(2, g).clone().requires_grad_(True)
    batched = gradient_distance(per_class_weight_grads(fm, flat, syn),
                                [t.detach() for t in per_class_weight_grads(fm, flat, x_real)])
    # every parameter, biases and norm parameters included: the formula gives them 0
    expected = dc_match_reference(fm.model.requires_grad_(True), list(x_real), list(syn))
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-5)
    g_batched, = torch.autograd.grad(batched, syn)
    g_loop, = torch.autograd.grad(expected, syn)
    torch.testing.assert_close(g_batched, g_loop, rtol=1e-3, atol=1e-6)
    assert 0 < batched < 10 * sum(s[0] for s in fm.shapes if len(s) > 1)


def test_dsa_shares_parameters_between_real_and_synthetic(real):
    config = DSAConfig(strategy=dsa_strategy_for("digits"))
    x = real.per_class(4, generator(0))
    changed = 0
    for seed in range(12):
        a_real, a_syn = siamese_per_class(x, x[:, :2].clone(), generator(seed), config)
        b_real, b_syn = siamese_per_class(x, x[:, :2].clone(), generator(seed), config)
        assert torch.equal(a_syn, a_real[:, :2])  # the same draw for the class's real and synthetic images
        assert torch.equal(a_real, b_real) and torch.equal(a_syn, b_syn)  # same seed, same parameters
        changed += not torch.allclose(a_real, x)
    assert changed >= 10  # augmentation was applied (not the identity)
    c_real, _ = siamese_per_class(x, x[:, :2].clone(), generator(100), config)
    d_real, _ = siamese_per_class(x, x[:, :2].clone(), generator(101), config)
    assert not torch.equal(c_real, d_real)


def test_dsa_step_runs_and_reports_its_name(real):
    cfg = resolve("dsa", "digits", 1, 1, {**TINY, "outer_loop": 2, "inner_loop": 1})
    g = generator(0)
    method = build_method(cfg, real, g)
    images = StageImages(torch.zeros(10, 0, 1, 8, 8), real.init_images(1, g), real.info, lr=0.1, momentum=0.5)
    loss = method.step(images)
    assert method.name == "dsa" and method.dsa is not None and loss > 0


# --- MTT ----------------------------------------------------------------------------------------------------------

def _mtt_problem(dtype=torch.float64):
    torch.manual_seed(0)
    fm = FlatModel(ConvNet(1, 3, 4, depth=1, width=3).to(dtype))
    start = fm.flatten()
    target = start + 0.05 * torch.randn_like(start)
    info = load_dataset("digits").info
    frozen = torch.randn(3, 1, 1, 4, 4, dtype=dtype) * 0.5
    images = StageImages(frozen, torch.randn(3, 2, 1, 4, 4, dtype=dtype) * 0.5, info, lr=1.0, momentum=0.0)
    lr = torch.tensor(0.1, dtype=dtype, requires_grad=True)
    dsa = DSAConfig(strategy="color_crop_cutout_scale_rotate", single=False)
    plan = plan_steps(9, 4, 4, generator(3), dsa, (4, 4))
    return fm, start, target, images, lr, plan


def _full_loss(fm, start, target, images, lr, plan):
    x, y = images.flat_union()
    return param_loss(unroll(fm, start, x, y, lr, plan), start, target)


def test_mtt_meta_gradient_matches_finite_differences():
    fm, start, target, images, lr, plan = _mtt_problem()
    loss = _full_loss(fm, start, target, images, lr, plan)
    g_img, g_lr = torch.autograd.grad(loss, [images.new, lr])
    eps = 1e-6

    def shifted(idx, delta):
        with torch.no_grad():
            images.new[idx] += delta
        out = _full_loss(fm, start, target, images, lr, plan).detach()
        with torch.no_grad():
            images.new[idx] -= delta
        return out

    for idx in [(0, 0, 0, 1, 2), (1, 1, 0, 3, 0), (2, 0, 0, 2, 2)]:
        fd = (shifted(idx, eps) - shifted(idx, -eps)) / (2 * eps)
        torch.testing.assert_close(g_img[idx], fd, rtol=1e-5, atol=1e-9)
    fd_lr = (_full_loss(fm, start, target, images, lr.detach() + eps, plan)
             - _full_loss(fm, start, target, images, lr.detach() - eps, plan)).detach() / (2 * eps)
    torch.testing.assert_close(g_lr, fd_lr, rtol=1e-5, atol=1e-9)
    assert g_img[0].abs().sum() > 0 and g_lr.abs() > 0


def test_mtt_lean_meta_gradient_equals_full_unroll():
    fm, start, target, images, lr, plan = _mtt_problem()
    loss = _full_loss(fm, start, target, images, lr, plan)
    g_img, g_lr = torch.autograd.grad(loss, [images.new, lr])
    lean_loss, lean_img, lean_lr = lean_meta_gradient(fm, start, target, images, lr, plan)
    torch.testing.assert_close(lean_loss, loss.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(lean_img, g_img, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(lean_lr, g_lr, rtol=1e-9, atol=1e-12)


def test_mtt_buffer_and_pdd_run_end_to_end(tmp_path):
    buffer = tmp_path / "buffer"
    assert main(["buffer", "--experts", "2", "--epochs", "2", "--arch", "convnet1", "--batch-size", "256",
                 "--output", str(buffer), "--quiet"]) == 0
    out = tmp_path / "run"
    assert main(["pdd", "--base", "mtt", "--ipc", "2", "--stages", "2", "--buffer", str(buffer), "--arch",
                 "convnet1", "--iterations", "2", "--syn-steps", "2", "--max-start-epoch", "1", "--expert-epochs", "1",
                 "--transition-epochs", "1", "--memory", "lean", "--output", str(out), "--no-eval", "--quiet"]) == 0
    record = load_distilled(out)
    assert record["images"].shape == (20, 1, 8, 8) and record["stage"].tolist() == [1] * 10 + [2] * 10
    assert len(record["eval_lr"]) == 2 and all(lr > 0 for lr in record["eval_lr"])
    assert (out / "trajectories_stage2.pt").exists()  # regenerated from networks trained on U_1


# --- evaluation ---------------------------------------------------------------------------------------------------

def test_progressive_evaluation_carries_optimizer_state(digits):
    g = generator(0)
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(10).repeat(4)
    stage = torch.tensor([1] * 20 + [2] * 20)
    rows, raw = evaluate_progressive({"images": images, "labels": labels, "stage": stage, "eval_lr": [None, None]},
                                     digits, seeds=1, epochs=3, arch="convnet1")
    progressive = raw["3/2"]["protocols"]["hard"]["distilled"]["runs"][0]
    assert (progressive["epochs"], progressive["steps"]) == (6, 6) and rows[0].name.startswith("progressive, 2x3")
    protocol = make_protocol("hard", digits.info, 40, epochs=3)
    top1 = {}
    for carried in (True, False):
        t = StudentTrainer(digits.info, protocol, student="convnet1", seed=0)
        t.fit(images[:20], labels[:20], epochs=3)
        if not carried:
            t.reset_optimizer()
        t.fit(images, labels, epochs=3)
        top1[carried] = t.accuracy(digits.test)
    assert progressive["top1"] == top1[True] != top1[False]


# --- bad input ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["pdd", "--base", "dm", "--ipc", "2", "--stages", "3"], "--stages 3 is more than --ipc 2"),
    (["pdd", "--base", "dm", "--ipc", "4", "--stages", "3"], "not a multiple of --stages"),
    (["pdd", "--base", "delt", "--ipc", "2", "--stages", "2"], "needs a teacher"),
    (["distill", "--method", "mtt"], "pass --buffer DIR"),
    (["distill", "--method", "mtt", "--buffer", "MISSING"], "no expert buffer in"),
    (["distill", "--method", "dm", "--ipc", "500"], "has only"),
])
def test_bad_input_gives_a_one_line_error(tmp_path, capsys, argv, message):
    argv = [a.replace("MISSING", str(tmp_path / "nothing")) for a in argv]
    assert main([*argv, "--output", str(tmp_path / "run"), "--no-eval", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
