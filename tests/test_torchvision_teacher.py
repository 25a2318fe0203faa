"""``--teacher torchvision:NAME``: weights from a given file or the torch hub cache, never downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fastdistill.cli import main
from fastdistill.data import load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.models.teacher import load_teacher
from fastdistill.utils.fingerprint import file_sha256

torchvision = pytest.importorskip("torchvision")
CLASSES = [f"n0{1440764 + i}" for i in range(10)]  # WordNet-style folder names


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1)):
        for c in CLASSES:
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "data" / split / c / f"{i}.JPEG")
    return tmp_path / "data"


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    return path


def test_delt_runs_end_to_end_with_a_torchvision_teacher(folder, weights, tmp_path, monkeypatch):
    # a random teacher fails the accuracy sanity check; only this test lifts it
    monkeypatch.setattr("fastdistill.pipelines.delt.teacher.SANITY_FACTOR", 0.0)
    out = tmp_path / "out"
    assert main(["delt", "--dataset", "imagefolder", "--data-root", str(folder), "--image-size", "32",
                 "--teacher", "torchvision:resnet18", "--teacher-weights", str(weights), "--ipc", "1",
                 "--iterations", "2", "--round-iterations", "1", "--batch-size", "10", "--no-eval",
                 "--output", str(out), "--device", "cpu"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["inputs"]["teacher"] == file_sha256(weights)
    assert len(list((out / "images").rglob("*.png")) + list((out / "images").rglob("*.jpg"))) == 10
    # `evaluate` finds the run's torchvision teacher and its weights file in config.json
    assert main(["evaluate", str(out), "--protocols", "soft", "--seeds", "1", "--epochs", "1", "--device", "cpu"]) == 0
    assert json.loads((out / "results.json").read_text())["teacher"] == "torchvision:resnet18"


def test_teacher_metadata_records_imagenet_normalization_and_safetensors_load(folder, weights, tmp_path):
    from safetensors.torch import save_file

    st = tmp_path / "resnet18.safetensors"
    save_file(torch.load(weights, weights_only=True), st)
    ds = load_dataset("imagefolder", str(folder), False, 32)
    model, meta = load_teacher("torchvision:resnet18", ds.info, "cpu", weights=st)
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["std"] == [0.229, 0.224, 0.225]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_and_squeeze_folder_with_weights_are_refused(folder, weights):
    ds = load_dataset("imagefolder", str(folder), False, 32)
    with pytest.raises(FastDistillError, match="no classification model 'resnet9'"):
        load_teacher("torchvision:resnet9", ds.info, "cpu", weights=weights)
    with pytest.raises(FastDistillError, match="--teacher-weights goes with --teacher torchvision:NAME"):
        load_teacher(folder, ds.info, "cpu", weights=weights)


def test_class_count_mismatch_is_one_line(folder, tmp_path):
    path = tmp_path / "r1000.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    ds = load_dataset("imagefolder", str(folder), False, 32)
    with pytest.raises(FastDistillError, match="predicts 1000 classes but .* has 10") as err:
        load_teacher("torchvision:resnet18", ds.info, "cpu", weights=path)
    assert "\n" not in str(err.value)


def test_offline_without_weights_says_which_file_to_put_where(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    rc = main(["delt", "--dataset", "imagefolder", "--data-root", str(folder), "--image-size", "32", "--teacher",
               "torchvision:resnet18", "--ipc", "1", "--no-eval", "--output", str(tmp_path / "out"), "--device", "cpu"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc != 0 and len(errors) == 1
    line = errors[0]
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in line and "--teacher-weights" in line


def test_a_torchvision_reference_script_checkpoint_loads_as_teacher_weights(folder, weights, tmp_path):
    """torchvision's references/classification/train.py nests the state dict under "model" beside its arguments."""
    import argparse

    state = torch.load(weights, weights_only=True)
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 49,
                "args": argparse.Namespace(model="resnet18", lr=0.2)}, ckpt)
    ds = load_dataset("imagefolder", str(folder), False, 32)
    plain, _ = load_teacher("torchvision:resnet18", ds.info, "cpu", weights=weights)
    nested, _ = load_teacher("torchvision:resnet18", ds.info, "cpu", weights=ckpt, fmt="torchvision")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain(x), nested(x))
