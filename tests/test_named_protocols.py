"""Named evaluation protocols (``evaluate --protocol NAME``): their settings, schedules, staging, the pixel-space
batches, and one tiny student per protocol end to end through the command."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from fastdistill.augment.cutmix import CutMixParams
from fastdistill.cli import main
from fastdistill.data import load_dataset, to_float
from fastdistill.errors import FastDistillError
from fastdistill.eval import StudentTrainer, evaluate_distilled, make_protocol, random_real_subset
from fastdistill.eval.protocols import (
    NAMED_PROTOCOLS,
    check_named_protocol,
    lr_factor,
    minimax_epochs,
    named_protocol,
    protocol_staging,
)
from fastdistill.eval.recipebatches import mixed_targets, recipe_batch
from fastdistill.models import build_model
from fastdistill.models.teacher import save_teacher
from fastdistill.pipelines.outputs import save_distilled


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_named_protocol_settings(digits):
    info = digits.info
    delt = named_protocol("delt", info, 100)
    assert (delt.kind, delt.epochs, delt.batch_size, delt.optimizer, delt.schedule) == ("soft", 300, 50, "adamw",
                                                                                          "half_cosine")
    assert delt.randaugment == (6, 2) and delt.report == "best" and delt.eval_every == 10 and delt.pixel_pipeline
    sre2l = named_protocol("sre2l", info, 100)
    assert (sre2l.schedule, sre2l.batch_size, sre2l.rrc_scale, sre2l.pixel_pipeline) == ("cosine", 100, (0.08, 1.0),
                                                                                          False)
    rded = named_protocol("rded", info, 100)
    assert (rded.shuffle_patches, rded.rrc_scale, rded.eval_from) == (2, (0.5, 1.0), 0.8)
    for name, epochs in (("dc", 1000), ("mtt", 1000), ("pdd", 500)):
        p = named_protocol(name, info, 100)
        assert (p.kind, p.epochs, p.batch_size, p.lr, p.schedule, p.report) == ("hard", epochs, 256, 0.01, "step",
                                                                               "final")
        assert p.dsa_strategy and not p.pixel_pipeline
    mm = named_protocol("minimax", info, 100)
    assert (mm.kind, mm.epochs, mm.batch_size, mm.schedule, mm.gamma, mm.milestones) == (
        "hard", 2000, 64, "multistep", 0.2, (2 / 3, 5 / 6))
    assert mm.cutmix and mm.color_jitter == 0.4 and mm.lighting == 0.1 and not mm.dsa_strategy and mm.eval_every == 20
    assert named_protocol("minimax", info, 100, epochs=300).eval_every == 3
    assert named_protocol("delt", info, 100, epochs=2, lr=5e-4).lr == 5e-4
    d = mm.to_dict()
    assert d["name"] == "minimax" and "temperature" not in d and "randaugment" not in d and d["lighting"] == 0.1
    assert "name" not in make_protocol("soft", info, 100).to_dict()  # the hard/soft protocols record what they did
    with pytest.raises(FastDistillError, match="delt, sre2l, rded, dc, mtt, pdd, minimax"):
        named_protocol("dsa", info, 100)


def test_minimax_epoch_rule():
    assert [minimax_epochs(i, 10) for i in (1, 10, 20, 50, 100, 200, 500, 1000)] == [
        3000, 2000, 1500, 1500, 1000, 1000, 500, 300]
    assert minimax_epochs(10, 100) == 1300 and minimax_epochs(50, 100) == 1000


def test_cosine_and_multistep_schedules():
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    steps = [lr_factor("multistep", e, 12, (2 / 3, 5 / 6), 0.2) for e in range(12)]
    assert steps == pytest.approx([1.0] * 8 + [0.2] * 2 + [0.04] * 2)  # MultiStepLR at 8 and 10
    p = named_protocol("rded", load_dataset("digits").info, 100)
    assert [e for e in range(1, 301) if p.evaluates(e, 300, 10)] == list(range(250, 301, 10))


def test_protocol_staging():
    stage = torch.tensor([1, 1, 2, 2])
    assert protocol_staging("pdd", 4, stage, [0.02, None], False) == (stage, [0.02, None])
    assert protocol_staging("pdd", 4, None, None, False) == (None, None)
    stages, lrs = protocol_staging("mtt", 4, stage, [0.02, 0.03], False)
    assert stages.tolist() == [1, 1, 1, 1] and lrs == [0.03]
    assert protocol_staging("mtt", 4, None, None, True) == (None, None)
    assert protocol_staging("dc", 4, stage, [0.02, 0.03], False) == (None, None)
    with pytest.raises(FastDistillError, match="--protocol mtt"):
        protocol_staging("mtt", 4, None, [None], False)
    with pytest.raises(FastDistillError, match="needs a teacher"):
        check_named_protocol("delt", False, False)
    check_named_protocol("dc", False, False)


def test_cutmix_hard_targets_mix_the_losses():
    labels = torch.tensor([0, 1, 2, 3])
    mix = CutMixParams(torch.tensor([0, 2, 0, 4]), torch.tensor([1, 2, 3, 0]))  # 2 x 4 of an 8 x 8 image
    target = mixed_targets(labels, mix, 5, (8, 8))
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    lam = 1 - 8 / 64
    expected = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, labels[mix.perm])
    torch.testing.assert_close(F.cross_entropy(logits, target), expected)
    assert mixed_targets(labels, None, 5, (8, 8)) is labels


def test_recipe_batch_is_seeded_and_keeps_the_shape(digits):
    x = digits.info.normalize(to_float(digits.train.images[:6]))
    for name in ("delt", "rded", "minimax"):
        p = named_protocol(name, digits.info, 6)
        a, mix = recipe_batch(x, p, digits.info, torch.Generator().manual_seed(1))
        b, _ = recipe_batch(x, p, digits.info, torch.Generator().manual_seed(1))
        assert a.shape == x.shape and torch.equal(a, b) and mix is not None
    # without any augmentation drawn, the batch is the input (pixel round trip through uint8 included)
    plain = named_protocol("delt", digits.info, 6, randaugment=(0, 0), rrc_scale=(1.0, 1.0), cutmix=False)
    out, _ = recipe_batch(x, plain, digits.info, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_minimax_student_trains(digits):
    x, y = random_real_subset(digits.train, torch.arange(10).repeat_interleave(3), 0)
    p = named_protocol("minimax", digits.info, len(y), epochs=2)
    trainer = StudentTrainer(digits.info, p, student="convnet2", seed=0)
    trainer.fit(x, y)
    assert trainer.steps == 2 * 1 and all(torch.isfinite(torch.tensor(trainer.losses)))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, digits):
    torch.manual_seed(0)
    return save_teacher(tmp_path_factory.mktemp("teacher"), build_model("convnet2-bn", 10, 1, 8), "convnet2-bn",
                        digits.info)


@pytest.mark.parametrize("name", list(NAMED_PROTOCOLS))
def test_evaluate_command_under_each_named_protocol(tmp_path, digits, teacher_dir, name):
    x, y = random_real_subset(digits.train, torch.arange(10).repeat_interleave(2), 7)
    run = tmp_path / "run"
    extra = {"stage": torch.tensor([1, 2] * 10), "eval_lr": [0.02, 0.03]} if name in ("mtt", "pdd") else None
    save_distilled(run, to_float(x), y, digits.info, extra=extra)
    kind = NAMED_PROTOCOLS[name]
    student = "convnet2-bn" if kind == "soft" else "convnet2"
    rc = main(["evaluate", str(run), "--protocol", name, "--epochs", "1", "--seeds", "1", "--full-data", "skip",
               "--quiet", "--teacher", str(teacher_dir), "--student", student, "--feature-model", "pixels"])
    assert rc == 0
    res = json.loads((run / "results.json").read_text())
    entry = res["protocols"][kind]
    assert res["protocol_name"] == name and entry["protocol"]["name"] == name and list(res["protocols"]) == [kind]
    assert entry["protocol"]["epochs"] == 1 and name in res["metric"]
    runs = entry["distilled"]["runs"]
    if name == "pdd":  # progressive over the two stages, one epoch each, at the learned rates
        assert res["stages"] == 2 and res["stage_lrs"] == [0.02, 0.03] and runs[0]["epochs"] == 2
    elif name == "mtt":  # the union at the last learned rate
        assert res["stages"] == 1 and res["stage_lrs"] == [0.03] and runs[0]["epochs"] == 1
    else:
        assert res["stages"] is None
    if entry["protocol"]["report"] == "best":
        assert runs[0]["top1"] == runs[0]["best_top1"] and "final_top1" in runs[0]
    assert f"{name} ({kind})" in (run / "report" / "report.md").read_text()


def test_evaluate_command_protocol_errors(tmp_path, digits, capsys):
    x, y = random_real_subset(digits.train, torch.arange(10).repeat_interleave(2), 7)
    save_distilled(tmp_path / "run", to_float(x), y, digits.info)
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(tmp_path / "run"), "--protocol", "dsa"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "delt" in err and "minimax" in err
    assert main(["evaluate", str(tmp_path / "run"), "--protocol", "dc", "--protocols", "hard"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "run"), "--protocol", "mtt", "--quiet"]) == 2
    assert "learned" in capsys.readouterr().err


def test_pipelines_refuse_a_named_protocol_they_cannot_run(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["delt", "--eval-protocol", "mtt", "--output", str(out)]) == 2
    assert "--protocol mtt" in capsys.readouterr().err and not out.exists()
    assert main(["delt", "--eval-protocol", "dc", "--eval-protocols", "hard", "--output", str(out)]) == 2
    assert "not both" in capsys.readouterr().err and not out.exists()


def test_soft_students_without_augmentation_train(digits, teacher_dir):
    x, y = random_real_subset(digits.train, torch.arange(10).repeat_interleave(2), 7)
    res = evaluate_distilled(x, y, digits, teacher=teacher_dir, protocols=["soft"], student="convnet2-bn", seeds=1,
                             epochs=1, progress=False, diversity=False, ars=True)
    assert res["protocols"]["soft"]["no_augmentation"]["distilled"]["runs"][0]["epochs"] == 1
