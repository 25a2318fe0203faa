"""Stored soft labels (``relabel``): the draw/apply split equals the old augmentation, the same seed stores the same
labels, students replay them exactly (float32: bit for bit; float16: within 1e-2 of every weight), a relabel resumes
by chunk, and evaluate refuses labels made for other images, seeds, epochs, batch size or teacher."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fastdistill.augment import apply_crop_mix, cutmix, random_resized_crop, sample_crop_mix
from fastdistill.cli import main
from fastdistill.data import load_dataset, to_float
from fastdistill.errors import FastDistillError
from fastdistill.eval import StudentTrainer, evaluate_distilled, make_protocol
from fastdistill.eval import relabel as relabel_module
from fastdistill.eval.relabel import MANIFEST, StoredLabels, relabel, storage_bytes
from fastdistill.models import build_model
from fastdistill.models.teacher import save_teacher
from fastdistill.pipelines.outputs import save_distilled
from fastdistill.utils.io import write_json

EPOCHS = 2


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def tiny(digits):
    """20 training images (2 per class) and a fixed random BatchNorm teacher."""
    idx = torch.cat([digits.train.class_indices(c)[:2] for c in range(10)])
    torch.manual_seed(0)
    teacher = build_model("convnet3-bn", 10, 1, 8).eval().requires_grad_(False)
    return digits.train.images[idx], digits.train.labels[idx], teacher


def _weights(trainer: StudentTrainer) -> list[torch.Tensor]:
    return [v for v in trainer.model.state_dict().values() if v.is_floating_point()]


def test_drawn_parameters_reproduce_the_augmentation_stream():
    x = torch.rand(12, 3, 10, 9)
    g = torch.Generator().manual_seed(4)
    reference = cutmix(random_resized_crop(x, g), g)  # crop and flip draws, then CutMix draws, on one generator
    params = sample_crop_mix(12, (10, 9), torch.Generator().manual_seed(4))
    torch.testing.assert_close(apply_crop_mix(x, params), reference, rtol=0, atol=0)


@pytest.mark.parametrize(("dtype", "tolerance"), [("float32", 0.0), ("float16", 1e-2)])
def test_students_replay_stored_labels_like_the_live_teacher(tmp_path, digits, tiny, dtype, tolerance):
    x, y, teacher = tiny
    relabel(x, y, digits, teacher, tmp_path, seeds=[5], epochs=EPOCHS, chunk_epochs=2, logits_dtype=dtype,
            progress=False, log=lambda _: None)
    protocol = make_protocol("soft", digits.info, len(y), epochs=EPOCHS, student="convnet3-bn")
    live = StudentTrainer(digits.info, protocol, student="convnet3-bn", teacher=teacher, seed=5)
    live.fit(x)
    stored = StoredLabels(tmp_path)
    stored.check(x, None, protocol, [5])
    replay = StudentTrainer(digits.info, protocol, student="convnet3-bn", seed=5,
                            stored=stored.stream("distilled", 5, x))
    replay.fit(x)
    for a, b in zip(_weights(live), _weights(replay), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=tolerance)
    if dtype == "float32":
        assert live.accuracy(digits.test) == replay.accuracy(digits.test)


def test_same_seed_same_labels_and_the_printed_size(tmp_path, digits, tiny):
    x, y, teacher = tiny
    lines: list[str] = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        relabel(x, y, digits, teacher, tmp_path / name, seeds=[seed], epochs=2, chunk_epochs=1, progress=False,
                log=lines.append)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.pt"))
    assert len(files) == 4  # 2 sets x 2 chunks
    for rel in files:
        a, b = (torch.load(tmp_path / n / rel, weights_only=True) for n in ("a", "b"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = torch.load(tmp_path / "c" / files[0].as_posix().replace("seed1", "seed2"), weights_only=True)
    a = torch.load(tmp_path / "a" / files[0], weights_only=True)
    assert not torch.equal(a["boxes"], c["boxes"])
    tensor_bytes = sum(v.numel() * v.element_size() for rel in files
                       for k, v in torch.load(tmp_path / "a" / rel, weights_only=True).items() if k not in ("rng", "n"))
    protocol = make_protocol("soft", digits.info, 20, epochs=2)
    assert tensor_bytes == storage_bytes([20], 10, protocol, 1) == json.loads((tmp_path / "a" / MANIFEST).read_text())[
        "bytes"]
    assert "2 sets x 1 seed(s) x 2 epochs x 20 images" in lines[0]


def test_an_interrupted_relabel_resumes_at_the_first_missing_chunk(tmp_path, digits, tiny, monkeypatch):
    x, y, teacher = tiny
    kwargs = {"seeds": [0], "epochs": 3, "chunk_epochs": 1, "progress": False, "log": lambda _: None}
    relabel(x, y, digits, teacher, tmp_path / "whole", **kwargs)  # 3 chunks of one epoch per set
    saved = relabel_module.torch_save
    calls = []

    def interrupted(path, obj):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        saved(path, obj)

    monkeypatch.setattr(relabel_module, "torch_save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        relabel(x, y, digits, teacher, tmp_path / "cut", **kwargs)
    monkeypatch.setattr(relabel_module, "torch_save", saved)
    with pytest.raises(FastDistillError, match="--resume"):
        relabel(x, y, digits, teacher, tmp_path / "cut", **kwargs)
    with pytest.raises(FastDistillError, match="different settings"):
        relabel(x, y, digits, teacher, tmp_path / "cut", **{**kwargs, "epochs": 2}, resume=True)
    relabel(x, y, digits, teacher, tmp_path / "cut", **kwargs, resume=True)
    for path in sorted((tmp_path / "whole").rglob("*.pt")):
        a = torch.load(path, weights_only=True)
        b = torch.load(tmp_path / "cut" / path.relative_to(tmp_path / "whole"), weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_stored_labels_refuse_other_images_seeds_and_settings(tmp_path, digits, tiny):
    x, y, teacher = tiny
    relabel(x, y, digits, teacher, tmp_path, seeds=[0], epochs=2, progress=False, log=lambda _: None)
    stored = StoredLabels(tmp_path)
    protocol = make_protocol("soft", digits.info, 20, epochs=2)
    stored.check(x, None, protocol, [0])
    with pytest.raises(FastDistillError, match="other images"):
        stored.check(x.flip(0), None, protocol, [0])
    with pytest.raises(FastDistillError, match="hold seeds"):
        stored.check(x, None, protocol, [0, 1])
    with pytest.raises(FastDistillError, match="epochs 2"):
        stored.check(x, None, dataclasses.replace(protocol, epochs=3), [0])
    with pytest.raises(FastDistillError, match="batch_size 10"):
        stored.check(x, None, dataclasses.replace(protocol, batch_size=20), [0])
    with pytest.raises(FastDistillError, match="random real subset"):
        stored.stream("random_real", 0, x)
    next(tmp_path.rglob("*.pt")).unlink()
    with pytest.raises(FastDistillError, match="incomplete"):
        StoredLabels(tmp_path)


def test_progressive_students_replay_stored_labels(tmp_path, digits, tiny):
    x, y, teacher = tiny
    stages = torch.tensor([1, 2] * 10)
    relabel(x, y, digits, teacher, tmp_path, seeds=[0], epochs=1, stages=stages, logits_dtype="float32",
            progress=False, log=lambda _: None)
    common = {"protocols": ("soft",), "seeds": 1, "epochs": 1, "stages": stages, "progress": False}
    live = evaluate_distilled(x, y, digits, teacher=teacher, **common)
    stored = evaluate_distilled(x, y, digits, stored_labels=StoredLabels(tmp_path), **common)
    for which in ("distilled", "random_real"):
        a, b = live["protocols"]["soft"][which]["runs"][0], stored["protocols"]["soft"][which]["runs"][0]
        assert (a["top1"], a["epochs"], a["steps"]) == (b["top1"], b["epochs"], b["steps"])


@pytest.fixture
def run(tmp_path, digits, tiny):
    """A run folder with a tiny distilled set and its teacher recorded in config.json, plus another teacher."""
    x, y, teacher = tiny
    folder = tmp_path / "run"
    save_distilled(folder, to_float(x), y, digits.info)
    teacher_dir = save_teacher(tmp_path / "teacher", teacher, "convnet3-bn", digits.info)
    torch.manual_seed(1)
    other = save_teacher(tmp_path / "other", build_model("convnet3-bn", 10, 1, 8), "convnet3-bn", digits.info)
    write_json(folder / "config.json", {"command": "delt", "config": {"teacher": str(teacher_dir)}})
    return folder, other


def test_relabel_then_evaluate_without_teacher_equals_live(run, capsys):
    folder, other = run
    common = ["--epochs", "1", "--seeds", "1", "--device", "cpu", "--quiet"]
    assert main(["relabel", str(folder), *common, "--logits-dtype", "float32"]) == 0
    assert "2 sets x 1 seed(s) x 1 epochs x 20 images" in capsys.readouterr().out
    assert main(["evaluate", str(folder), *common, "--protocols", "soft"]) == 0
    live = json.loads((folder / "results.json").read_text())["protocols"]["soft"]
    assert main(["evaluate", str(folder), *common, "--soft-labels", "stored"]) == 0
    results = json.loads((folder / "results.json").read_text())
    stored = results["protocols"]["soft"]
    assert set(results["protocols"]) == {"hard", "soft"} and results["teacher"].startswith("stored soft labels")
    for which in ("distilled", "random_real"):
        assert [r["top1"] for r in stored[which]["runs"]] == [r["top1"] for r in live[which]["runs"]]
    capsys.readouterr()
    refusals = [(["--seed", "1"], "hold seeds"), (["--epochs", "2"], "epochs 1"),
                (["--teacher", str(other)], "another teacher")]
    for extra, text in refusals:
        argv = ["evaluate", str(folder), *common, "--soft-labels", "stored", *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], err
    assert main(["relabel", str(folder), *common]) == 2
    assert "already holds stored labels" in capsys.readouterr().err
    assert main(["relabel", str(folder), *common, "--logits-dtype", "float32", "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_evaluate_refuses_labels_stored_for_another_run(run, tmp_path, digits, capsys):
    folder, _ = run
    assert main(["relabel", str(folder), "--epochs", "1", "--seeds", "1", "--device", "cpu", "--quiet"]) == 0
    other = tmp_path / "other-run"
    record = torch.load(folder / "distilled.pt", weights_only=True)
    save_distilled(other, to_float(record["images"].flip(0)), record["labels"].flip(0), digits.info)
    argv = ["evaluate", str(other), "--epochs", "1", "--seeds", "1", "--device", "cpu", "--quiet",
            "--protocols", "soft", "--soft-labels", str(folder / "relabel")]
    capsys.readouterr()
    assert main(argv) == 2
    assert "other images" in capsys.readouterr().err
