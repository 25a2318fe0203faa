"""Evaluation harness (and the DSA / soft-label augmentations it uses): student protocols, progressive training,
random-real baseline, and the ``evaluate`` command."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from fastdistill.augment import (
    DSA_GROUPS,
    DSAConfig,
    apply_dsa,
    cutmix,
    dsa_strategy_for,
    resized_crop,
    sample_crop_boxes,
    sample_dsa_params,
)
from fastdistill.cli import main
from fastdistill.data import to_float
from fastdistill.errors import FastDistillError
from fastdistill.eval import (
    StudentTrainer,
    evaluate_distilled,
    format_table,
    make_protocol,
    random_real_subset,
    soft_batch_size,
)
from fastdistill.eval.protocols import lr_factor
from fastdistill.models import build_model
from fastdistill.models.teacher import save_teacher
from fastdistill.pipelines.outputs import save_distilled
from fastdistill.utils.io import write_json


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ipc_subset(digits, ipc: int, seed: int = 123):
    labels = torch.arange(digits.info.num_classes).repeat_interleave(ipc)
    return random_real_subset(digits.train, labels, seed)


# ---------------------------------------------------------------- DSA


@pytest.mark.parametrize("group", DSA_GROUPS)
def test_dsa_each_transform_changes_the_batch(group):
    x = torch.randn(32, 3, 16, 16)
    params = sample_dsa_params(32, (16, 16), generator=gen(), config=DSAConfig(strategy=group))
    assert params.groups == (group,)
    y = apply_dsa(x, params)
    assert y.shape == x.shape
    changed = (y - x).flatten(1).abs().amax(1) > 1e-4
    assert changed.any(), f"{group} left every image unchanged"


@pytest.mark.parametrize("group", DSA_GROUPS)
def test_dsa_shared_params_give_identical_transforms_across_batches(group):
    x = torch.randn(6, 3, 12, 12)
    real, syn = x[:4], x[2:].clone()  # images 2 and 3 sit at different positions in two batches of other sizes
    params = sample_dsa_params(len(real), (12, 12), generator=gen(1), config=DSAConfig(strategy=group), shared=True)
    a, b = apply_dsa(real, params), apply_dsa(syn, params)
    torch.testing.assert_close(a[2:4], b[0:2], rtol=0, atol=1e-6)
    torch.testing.assert_close(apply_dsa(x.clone(), params), apply_dsa(x, params), rtol=0, atol=0)


def test_dsa_per_sample_params_differ_between_images():
    x = torch.randn(1, 1, 16, 16).expand(8, -1, -1, -1).contiguous()
    y = apply_dsa(x, sample_dsa_params(8, (16, 16), generator=gen(), config=DSAConfig(strategy="rotate")))
    assert not torch.allclose(y[0], y[1])


@pytest.mark.parametrize("group", ["color", "crop", "cutout", "flip", "scale", "rotate"])
def test_dsa_is_differentiable_in_the_images(group):
    x = torch.randn(3, 2, 6, 6, dtype=torch.double, requires_grad=True)
    params = sample_dsa_params(3, (6, 6), generator=gen(2), config=DSAConfig(strategy=group))
    assert torch.autograd.gradcheck(lambda t: apply_dsa(t, params), (x,), eps=1e-6, atol=1e-5)


def test_dsa_single_mode_picks_one_group_and_multi_mode_applies_all():
    picked = {sample_dsa_params(4, (8, 8), generator=gen(s)).groups for s in range(40)}
    assert all(len(g) == 1 for g in picked) and len(picked) > 3
    full = sample_dsa_params(4, (8, 8), generator=gen(), config=DSAConfig(single=False))
    assert full.groups == DSA_GROUPS


def test_dsa_rejects_mismatched_batch_and_unknown_transform():
    params = sample_dsa_params(4, (8, 8), generator=gen(), config=DSAConfig(strategy="scale"))
    with pytest.raises(ValueError, match="shared=True"):
        apply_dsa(torch.zeros(5, 1, 8, 8), params)
    with pytest.raises(ValueError, match="unknown DSA"):
        sample_dsa_params(4, (8, 8), generator=gen(), config=DSAConfig(strategy="color_blur"))


def test_dsa_strategy_drops_flip_for_digit_datasets():
    assert "flip" not in dsa_strategy_for("digits") and "flip" not in dsa_strategy_for("mnist")
    assert "flip" in dsa_strategy_for("fashion-mnist") and "flip" in dsa_strategy_for("cifar10")


# ---------------------------------------------------------------- soft-label augmentation


def test_resized_crop_matches_torchvision_per_sample():
    x = torch.rand(24, 3, 16, 12)
    g = gen()
    boxes = sample_crop_boxes(24, (16, 12), g)
    flips = torch.rand(24, generator=g) < 0.5
    out = resized_crop(x, boxes, flips)
    for i in range(24):
        top, left, h, w = boxes[i].long().tolist()
        ref = TF.resized_crop(x[i], top, left, h, w, [16, 12], antialias=False)
        torch.testing.assert_close(out[i], ref.flip(-1) if flips[i] else ref, rtol=0, atol=1e-5)


def test_crop_boxes_lie_inside_the_image_with_area_in_scale():
    boxes = sample_crop_boxes(500, (32, 32), gen(), scale=(0.25, 1.0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = h * w / 1024
    assert area.min() >= 0.2 and area.max() <= 1.0 and area.std() > 0.1


def test_cutmix_pastes_one_box_from_partner_images():
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 2, 16, 16).contiguous()
    out = cutmix(x, gen(3))
    changed = out != x  # [8, 2, 16, 16]
    assert changed.any()
    moved = [i for i in range(8) if changed[i].any()]
    for i in moved:  # one rectangle, the same in every image, filled with a single other image's value
        torch.testing.assert_close(changed[i], changed[moved[0]])
        assert out[i][changed[i]].unique().numel() == 1
    rows, cols = changed[moved[0], 0].any(1), changed[moved[0], 0].any(0)
    assert changed[moved[0], 0].sum() == rows.sum() * cols.sum()


# ---------------------------------------------------------------- protocols and trainer


def test_protocol_defaults(digits):
    info = digits.info
    hard = make_protocol("hard", info, 100)
    assert (hard.optimizer, hard.lr, hard.momentum, hard.weight_decay, hard.batch_size, hard.schedule) == \
        ("sgd", 0.01, 0.9, 5e-4, 256, "step")
    soft = make_protocol("soft", info, 100, epochs=7)
    assert (soft.optimizer, soft.lr, soft.weight_decay, soft.temperature, soft.batch_size, soft.epochs) == \
        ("adamw", 1e-3, 0.01, 20.0, 50, 7)
    assert soft_batch_size(1, 10, 10) == 10 and soft_batch_size(50, 10, 500) == 100
    assert soft_batch_size(10, 1000, 10000) == 100 and soft_batch_size(50, 100, 5000) == 200
    cifar = dataclasses.replace(info, name="cifar10")
    assert make_protocol("hard", cifar, 100).epochs == 300
    with pytest.raises(FastDistillError, match="unknown evaluation protocol"):
        make_protocol("medium", info, 100)


def test_lr_schedules():
    assert lr_factor("step", 149, 300) == 1.0 and lr_factor("step", 150, 300) == pytest.approx(0.1)
    assert lr_factor("step", 0, 1) == 1.0 and lr_factor("step", 1, 3) == 1.0 and lr_factor("step", 2, 3) < 1
    assert lr_factor("half_cosine", 0, 300) == 1.0
    assert lr_factor("half_cosine", 150, 300) == pytest.approx(0.5 * (1 + 2**-0.5))
    assert 0.5 < lr_factor("half_cosine", 299, 300) < 0.51


def test_hard_protocol_learns_on_the_full_train_set(digits):
    info = digits.info
    proto = make_protocol("hard", info, len(digits.train), epochs=2, batch_size=32)
    trainer = StudentTrainer(info, proto, student="convnet3", seed=0)
    loss = trainer.fit(digits.train.images, digits.train.labels)
    assert loss < 2.2
    assert trainer.accuracy(digits.test) > 40.0  # chance is 10%
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)  # x0.1 in the second half


def test_soft_protocol_learns_from_the_teacher(digits, linear_teacher):
    info = digits.info
    proto = make_protocol("soft", info, len(digits.train), epochs=1)
    trainer = StudentTrainer(info, proto, student="convnet3-bn", teacher=linear_teacher, seed=0)
    trainer.fit(digits.train.images)  # labels unused: the teacher relabels every augmented batch
    assert trainer.accuracy(digits.test) > 35.0
    decay, rest = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and rest["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in decay["params"]) and all(p.dim() <= 1 for p in rest["params"])


def test_soft_protocol_without_teacher_is_an_error(digits):
    with pytest.raises(FastDistillError, match="needs a teacher"):
        StudentTrainer(digits.info, make_protocol("soft", digits.info, 100), seed=0)


def test_progressive_fit_carries_the_optimizer_state(digits):
    info = digits.info
    x, y = ipc_subset(digits, 2)
    proto = make_protocol("hard", info, len(x), epochs=2, dsa_strategy="")  # no augmentation: exact gradients
    trainer = StudentTrainer(info, proto, seed=0)
    trainer.fit(x[:10], y[:10])
    optimizer = trainer.optimizer
    params = [p for p in trainer.model.parameters()]
    buf1 = [optimizer.state[p]["momentum_buffer"].clone() for p in params]
    assert all(b.abs().sum() > 0 for b in buf1[:2])
    # expected buffer after one more step on the full union with lr 0: 0.9 * buf + grad + wd * p
    trainer.model.zero_grad()
    F.cross_entropy(trainer.model(trainer.inputs(x)), y).backward()
    expected = [0.9 * b + p.grad + 5e-4 * p.detach() for b, p in zip(buf1, params, strict=True)]
    trainer.fit(x, y, epochs=1, lr=0.0)
    assert trainer.optimizer is optimizer and trainer.steps == 3 and trainer.epochs_done == 3
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(optimizer.state[p]["momentum_buffer"], e, rtol=1e-4, atol=1e-6)
    trainer.reset_optimizer()
    assert trainer.optimizer is not optimizer and not trainer.optimizer.state


def test_progressive_adamw_step_count_continues(digits, linear_teacher):
    x, _ = ipc_subset(digits, 3)
    trainer = StudentTrainer(digits.info, make_protocol("soft", digits.info, len(x), epochs=1), student="convnet3-bn",
                             teacher=linear_teacher, seed=0)
    assert trainer.protocol.batch_size == 10
    trainer.fit(x[:10])
    trainer.fit(x)
    first = next(iter(trainer.model.parameters()))
    assert trainer.steps == 1 + 3 and float(trainer.optimizer.state[first]["step"]) == 4


def test_training_is_deterministic_for_a_seed(digits):
    x, y = ipc_subset(digits, 2)
    proto = make_protocol("hard", digits.info, len(x), epochs=3)

    def weights(seed: int) -> torch.Tensor:
        trainer = StudentTrainer(digits.info, proto, seed=seed)
        trainer.fit(x, y)
        return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])

    torch.testing.assert_close(weights(0), weights(0), rtol=0, atol=0)
    assert not torch.allclose(weights(0), weights(1))


def test_nan_loss_stops_with_the_epoch(digits):
    x, y = ipc_subset(digits, 2)
    proto = make_protocol("hard", digits.info, len(x), epochs=3, lr=1e30)
    with pytest.raises(FastDistillError, match="epoch"):
        StudentTrainer(digits.info, proto, seed=0).fit(x, y)


# ---------------------------------------------------------------- harness


def test_random_real_subset_matches_counts_and_differs_by_seed(digits):
    labels = torch.tensor([0, 0, 0, 3, 3, 9, 1, 1, 1, 1])
    x0, y0 = random_real_subset(digits.train, labels, 0)
    x1, y1 = random_real_subset(digits.train, labels, 1)
    assert torch.equal(y0, labels) and torch.equal(y1, labels)
    assert not torch.equal(x0, x1)
    torch.testing.assert_close(random_real_subset(digits.train, labels, 0)[0], x0)
    train = digits.train.images.flatten(1)
    for img, c in zip(x0.flatten(1), y0, strict=True):  # real images of the right class
        match = (train == img).all(1)
        assert (digits.train.labels[match] == c).any()
    assert torch.unique(x0[:3].flatten(1), dim=0).shape[0] == 3  # no repeats within a class


def test_random_real_subset_refuses_more_than_a_class_holds(digits):
    with pytest.raises(FastDistillError, match="class 0"):
        random_real_subset(digits.train, torch.zeros(1000, dtype=torch.long), 0)


def test_evaluate_distilled_reports_both_sets_and_protocols(digits, linear_teacher):
    x, y = ipc_subset(digits, 2)
    res = evaluate_distilled(x, y, digits, teacher=linear_teacher, seeds=2, epochs=1, progress=False, track_best=1)
    assert res["seeds"] == [0, 1] and res["per_class"] == [2] * 10
    for kind in ("hard", "soft"):
        entry = res["protocols"][kind]
        assert entry["protocol"]["epochs"] == 1
        for which in ("distilled", "random_real"):
            runs = entry[which]["runs"]
            assert [r["seed"] for r in runs] == [0, 1]
            assert all(0 <= r["top1"] <= 100 and r["steps"] >= 1 and "best_top1" in r for r in runs)
            mean = sum(r["top1"] for r in runs) / 2
            assert entry[which]["mean"] == pytest.approx(mean)
            assert entry[which]["std"] == pytest.approx(abs(runs[0]["top1"] - mean))
        assert entry["delta"] == pytest.approx(entry["distilled"]["mean"] - entry["random_real"]["mean"])
    assert res["protocols"]["hard"]["student"] == "convnet3" and res["protocols"]["soft"]["student"] == "convnet3-bn"
    json.dumps(res)
    table = format_table(res)
    assert "hard" in table and "soft" in table and "random real" in table and "best of" in table


def test_evaluate_distilled_progressive_stages(digits):
    x, y = ipc_subset(digits, 2)
    stages = torch.tensor([1, 2] * 10)
    res = evaluate_distilled(x, y, digits, protocols=["hard"], seeds=1, epochs=2, stages=stages, progress=False,
                             stage_lrs=[0.02, 0.01])
    assert res["stages"] == 2 and res["stage_lrs"] == [0.02, 0.01]
    hard = res["protocols"]["hard"]
    distilled, real = hard["distilled"]["runs"][0], hard["random_real"]["runs"][0]
    assert distilled["epochs"] == real["epochs"] == 4 and distilled["steps"] == 4
    with pytest.raises(FastDistillError, match=r"lr 1e\+30"):  # the per-stage LRs reach the distilled students
        evaluate_distilled(x, y, digits, protocols=["hard"], seeds=1, epochs=2, stages=stages, progress=False,
                           stage_lrs=[1e30, 1e30])
    with pytest.raises(FastDistillError, match="one entry per stage"):
        evaluate_distilled(x, y, digits, protocols=["hard"], stages=stages, stage_lrs=[0.1], progress=False)


@pytest.mark.parametrize("ipc, classes, dataset, student, expected", [
    (1, 10, "cifar10", "", 10), (10, 10, "cifar10", "", 50), (20, 10, "cifar10", "", 50),
    (50, 10, "cifar10", "", 100), (100, 10, "cifar10", "", 100), (5, 10, "digits", "", 10),
    (10, 100, "cifar100", "", 100), (50, 100, "cifar100", "", 200),  # x2 for exactly 100 classes
    (10, 1000, "imagenet-1k", "", 100), (50, 1000, "imagenet-1k", "", 200),  # x2 for exactly 1000 classes
    (50, 200, "imagefolder", "", 100), (50, 101, "imagefolder", "", 100),  # other class counts: no doubling
    (10, 200, "tiny-imagenet", "", 100), (50, 200, "tiny-imagenet", "", 100), (1, 200, "tinyimagenet", "", 100),
    (50, 1000, "imagenet-1k", "resnet101", 100), (10, 100, "imagenet-100", "resnet101", 50),  # halved
    (50, 100, "cifar100", "resnet101", 200),  # ResNet-101 halves on ImageNet-1K/-100 only
    (1, 5, "cifar10", "", 5),  # at most the set size
])
def test_soft_batch_rule_matches_delt(ipc, classes, dataset, student, expected):
    assert soft_batch_size(ipc, classes, ipc * classes, dataset, student) == expected


def test_make_protocol_applies_the_batch_rule_to_its_student(digits):
    info = dataclasses.replace(digits.info, name="imagenet-1k", classes=tuple(str(i) for i in range(1000)))
    assert make_protocol("soft", info, 50_000).batch_size == 200
    assert make_protocol("soft", info, 50_000, student="resnet101").batch_size == 100


def test_student_lr_override_reaches_every_student_and_is_recorded(digits, linear_teacher):
    x, y = ipc_subset(digits, 1)
    res = evaluate_distilled(x, y, digits, teacher=linear_teacher, seeds=1, epochs=1, lr=0.002, progress=False)
    assert res["lr_override"] == 0.002
    assert res["protocols"]["hard"]["protocol"]["lr"] == res["protocols"]["soft"]["protocol"]["lr"] == 0.002
    default = evaluate_distilled(x, y, digits, protocols=["hard"], seeds=1, epochs=1, progress=False)
    assert default["lr_override"] is None and default["protocols"]["hard"]["protocol"]["lr"] == 0.01
    for kind in ("hard", "soft"):
        with pytest.raises(FastDistillError, match=r"lr 1e\+30"):  # the override is what the students train with
            evaluate_distilled(x, y, digits, teacher=linear_teacher, protocols=[kind], seeds=1, epochs=3, lr=1e30,
                               progress=False)
    with pytest.raises(FastDistillError, match="must be positive"):
        evaluate_distilled(x, y, digits, protocols=["hard"], lr=0.0, progress=False)


def test_evaluate_distilled_bad_inputs(digits):
    x, y = ipc_subset(digits, 1)
    with pytest.raises(FastDistillError, match="needs a teacher"):
        evaluate_distilled(x, y, digits, protocols=["soft"], progress=False)
    with pytest.raises(FastDistillError, match="unknown evaluation protocol"):
        evaluate_distilled(x, y, digits, protocols=["hard", "medium"], progress=False)
    with pytest.raises(FastDistillError, match="images are"):
        evaluate_distilled(torch.zeros(10, 3, 8, 8, dtype=torch.uint8), y, digits, protocols=["hard"], progress=False)
    with pytest.raises(FastDistillError, match="labels must lie"):
        evaluate_distilled(x, y + 5, digits, protocols=["hard"], progress=False)


# ---------------------------------------------------------------- the evaluate command


@pytest.fixture
def run_dir(tmp_path, digits):
    x, y = ipc_subset(digits, 2)
    folder = tmp_path / "run"
    save_distilled(folder, to_float(x), y, digits.info)
    return folder


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, digits):
    info = digits.info
    torch.manual_seed(0)
    return save_teacher(tmp_path_factory.mktemp("teacher"), build_model("convnet3-bn", 10, 1, 8), "convnet3-bn", info)


def test_evaluate_command_end_to_end(run_dir, teacher_dir, capsys):
    write_json(run_dir / "config.json", {"command": "delt", "config": {"teacher": str(teacher_dir)}})
    rc = main(["evaluate", str(run_dir), "--epochs", "1", "--seeds", "2", "--device", "cpu", "--quiet"])
    assert rc == 0
    res = json.loads((run_dir / "results.json").read_text())
    assert set(res["protocols"]) == {"hard", "soft"} and res["teacher"] == str(teacher_dir)
    assert len(res["protocols"]["soft"]["random_real"]["runs"]) == 2
    out = capsys.readouterr().out
    assert "random real" in out and "results.json" in out


def test_evaluate_command_progressive_record(tmp_path, digits):
    x, y = ipc_subset(digits, 2)
    folder = tmp_path / "pdd"
    extra = {"stage": torch.tensor([1, 2] * 10), "eval_lr": [0.02, 0.01]}
    save_distilled(folder, to_float(x), y, digits.info, extra=extra)
    assert main(["evaluate", str(folder), "--epochs", "1", "--seeds", "1", "--quiet", "--protocols", "hard"]) == 0
    res = json.loads((folder / "results.json").read_text())
    assert res["stages"] == 2 and res["stage_lrs"] == [0.02, 0.01]
    assert res["protocols"]["hard"]["distilled"]["runs"][0]["epochs"] == 2
    assert main(["evaluate", str(folder), "--epochs", "1", "--seeds", "1", "--quiet", "--protocols", "hard",
                 "--whole-set"]) == 0
    res = json.loads((folder / "results.json").read_text())
    assert res["stages"] is None and res["stage_lrs"] is None and res["options"]["whole_set"] is True
    assert res["protocols"]["hard"]["distilled"]["runs"][0]["epochs"] == 1
    assert res["protocols"]["hard"]["protocol"]["lr"] == 0.01


def test_evaluate_command_skips_soft_without_teacher(run_dir, capsys):
    rc = main(["evaluate", str(run_dir), "--epochs", "1", "--seeds", "1", "--quiet"])
    assert rc == 0
    res = json.loads((run_dir / "results.json").read_text())
    assert set(res["protocols"]) == {"hard"} and "soft" in res["skipped"]
    assert "soft-label protocol skipped" in capsys.readouterr().out


def test_evaluate_command_errors(tmp_path, run_dir, digits, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--protocols", "soft", "--quiet"]) == 2
    assert "needs a teacher" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--protocols", "hard,medium"]) == 2
    assert "--protocols" in capsys.readouterr().err
    other = tmp_path / "other"
    info = dataclasses.replace(digits.info, classes=tuple("abcdefghij"))
    save_distilled(other, torch.rand(10, 1, 8, 8), torch.arange(10), info)
    assert main(["evaluate", str(other)]) == 2
    assert "classes" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2  # a folder without distilled.pt
    assert "distilled.pt" in capsys.readouterr().err
