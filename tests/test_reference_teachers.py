"""``--teacher-format rded|sre2l-cifar|sre2l-tiny``: teacher checkpoints in the reference repositories' layouts load
onto fastdistill's models and give the same logits."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from fastdistill.cli import main
from fastdistill.data.base import DatasetInfo
from fastdistill.data.stats import IMAGENET_MEAN, IMAGENET_STD
from fastdistill.errors import FastDistillError
from fastdistill.models.convnet import ConvNet
from fastdistill.models.reference_teachers import CIFAR10_STATS, TINY_IMAGENET_STATS
from fastdistill.models.resnet import CifarResNet18
from fastdistill.models.teacher import load_teacher
from fastdistill.utils.fingerprint import file_sha256

CLASSES = tuple(f"c{i}" for i in range(10))


def _info(size: int, stats=(IMAGENET_MEAN, IMAGENET_STD)) -> DatasetInfo:
    return DatasetInfo("imagefolder", CLASSES, 3, size, tuple(stats[0]), tuple(stats[1]))


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so that a mix-up of BN tensors changes the logits."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _rded_convnet_state(model: ConvNet) -> dict[str, torch.Tensor]:
    """RDED's ConvNet naming (synthesize/models.py): layers.conv.{d}, layers.norm.{d}, classifier."""
    convs = [i for i, m in enumerate(model.body) if isinstance(m, nn.Conv2d)]
    norms = [i for i, m in enumerate(model.body) if isinstance(m, nn.BatchNorm2d)]
    rename = {f"body.{i}.": f"layers.conv.{d}." for d, i in enumerate(convs)}
    rename.update({f"body.{i}.": f"layers.norm.{d}." for d, i in enumerate(norms)})
    out = {}
    for key, value in model.state_dict().items():
        prefix = next((p for p in rename if key.startswith(p)), None)
        out[rename[prefix] + key[len(prefix):] if prefix else key] = value
    return out


def _torchvision_keys(model: CifarResNet18) -> dict[str, torch.Tensor]:
    """A ResNet-18-modified as the references build it: torchvision's resnet18 keys (no ``net.`` prefix)."""
    return {k[len("net."):]: v for k, v in model.state_dict().items()}


def _models():
    torch.manual_seed(0)
    return {
        "convnet3": (_randomize_bn(ConvNet(3, 10, 16, depth=3, norm="batch")), 16),
        "resnet18-mod": (_randomize_bn(CifarResNet18(3, 10)), 8),  # tiny inputs: the test is about the weights
        "resnet18": (_randomize_bn(torchvision.models.resnet18(num_classes=10)), 8),
    }


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """(file, format, our model, input size, stats the reference trained on) for every reference layout."""
    tmp_path = tmp_path_factory.mktemp("layouts")
    m = _models()
    conv, mod, tv = m["convnet3"][0], m["resnet18-mod"][0], m["resnet18"][0]
    namespace = argparse.Namespace(model="resnet18", lr=0.2, epochs=50, output_dir="save/rn18_50ep")
    cases = {
        "rded-convnet": ({"model": _rded_convnet_state(conv)}, "rded", conv),
        "rded-resnet18-modified": ({"model": _torchvision_keys(mod)}, "rded", mod),
        "rded-resnet18": ({"model": tv.state_dict()}, "rded", tv),
        "sre2l-cifar": ({"state_dict": {f"module.{k}": v for k, v in _torchvision_keys(mod).items()}, "acc": 78.72,
                         "epoch": 199}, "sre2l-cifar", mod),
        "sre2l-tiny": ({"model": _torchvision_keys(mod), "optimizer": {"state": {}, "param_groups": []},
                        "lr_scheduler": {"last_epoch": 49}, "epoch": 49, "args": namespace}, "sre2l-tiny", mod),
        "compiled-under-state_dict": ({"state_dict": {f"_orig_mod.{k}": v for k, v in
                                                      _rded_convnet_state(conv).items()}}, "rded", conv),
        "bare-state-dict": ({f"module.{k}": v for k, v in _torchvision_keys(mod).items()}, "sre2l-cifar", mod),
    }
    stats = {"rded": (IMAGENET_MEAN, IMAGENET_STD), "sre2l-cifar": CIFAR10_STATS, "sre2l-tiny": TINY_IMAGENET_STATS}
    out = {}
    for name, (obj, fmt, model) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        out[name] = (path, fmt, model, 16 if model is conv else 8, stats[fmt])
    return out


LAYOUTS = ["rded-convnet", "rded-resnet18-modified", "rded-resnet18", "sre2l-cifar", "sre2l-tiny",
           "compiled-under-state_dict", "bare-state-dict"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reference_layout_loads_with_equal_outputs(layouts, layout):
    path, fmt, model, size, stats = layouts[layout]
    x = torch.randn(2, 3, size, size)
    # data normalized as the reference trained: no renormalization, the logits are the reference model's exactly
    teacher, meta = load_teacher(path, _info(size, stats), "cpu", fmt=fmt)
    assert meta["format"] == fmt and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        assert torch.equal(teacher(x), model(x))
    # data normalized otherwise (CIFAR-100's statistics): the teacher reads it as the same pixels
    other = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    info = _info(size, other)
    teacher, _ = load_teacher(path, info, "cpu", fmt=fmt)
    pixels = torch.rand(2, 3, size, size)
    ref = DatasetInfo("r", CLASSES, 3, size, tuple(stats[0]), tuple(stats[1]))
    with torch.no_grad():
        torch.testing.assert_close(teacher(info.normalize(pixels)), model(ref.normalize(pixels)), rtol=1e-4,
                                   atol=1e-4)


def test_rded_convnet_key_names_are_rdeds():
    state = _rded_convnet_state(ConvNet(3, 10, 32, depth=2, norm="batch"))
    assert {"layers.conv.0.weight", "layers.conv.1.bias", "layers.norm.0.running_mean", "layers.norm.1.weight",
            "classifier.weight"} <= set(state)
    assert not any(k.startswith("body.") for k in state)


def _one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def test_missing_and_unexpected_keys_are_named(layouts, tmp_path):
    path, _, model, size, _ = layouts["rded-convnet"]
    state = torch.load(path, weights_only=True)["model"]
    del state["layers.norm.1.running_var"]
    state["layers.extra.weight"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(FastDistillError) as err:
        load_teacher(tmp_path / "bad.pth", _info(size), fmt="rded")
    line = _one_line(err)
    assert "missing layers.norm.1.running_var" in line and "unexpected layers.extra.weight" in line
    state = torch.load(path, weights_only=True)["model"]
    state["layers.conv.2.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"model": state}, tmp_path / "nan.pth")
    with pytest.raises(FastDistillError, match=r"holds NaN/inf \(in layers.conv.2.weight\)"):
        load_teacher(tmp_path / "nan.pth", _info(size), fmt="rded")


def test_wrong_shapes_deeper_resnets_and_image_size_are_refused(layouts, tmp_path):
    path, _, _, _, _ = layouts["rded-convnet"]
    with pytest.raises(FastDistillError, match="ConvNet-3 for 16x16px inputs .* pass --image-size 16") as err:
        load_teacher(path, _info(64), fmt="rded")
    _one_line(err)
    resnet34 = torchvision.models.resnet34(num_classes=10).state_dict()
    torch.save({"model": resnet34}, tmp_path / "r34.pth")
    with pytest.raises(FastDistillError, match="deeper than ResNet-18") as err:
        load_teacher(tmp_path / "r34.pth", _info(32), fmt="rded")
    _one_line(err)
    torch.save({"model": {"encoder.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(FastDistillError, match="neither a ConvNet .* nor a ResNet-18") as err:
        load_teacher(tmp_path / "other.pth", _info(32), fmt="rded")
    _one_line(err)
    state = torch.load(layouts["rded-resnet18-modified"][0], weights_only=True)["model"]
    state["bn1.weight"] = torch.ones(32)
    torch.save({"model": state}, tmp_path / "shape.pth")
    with pytest.raises(FastDistillError, match=r"shapes \(file vs model\) bn1.weight \(32,\) vs \(64,\)") as err:
        load_teacher(tmp_path / "shape.pth", _info(8), fmt="rded")
    _one_line(err)


def test_unreadable_or_unsafe_checkpoints_are_one_line(tmp_path):
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "extra": argparse.ArgumentParser}, tmp_path / "obj.pth")
    with pytest.raises(FastDistillError, match="cannot be read with weights_only=True") as err:
        load_teacher(tmp_path / "obj.pth", _info(32), fmt="sre2l-tiny")
    _one_line(err)
    torch.save({"optimizer": {"lr": 0.1}}, tmp_path / "nostate.pth")
    with pytest.raises(FastDistillError, match="holds no state dict .* check --teacher-format") as err:
        load_teacher(tmp_path / "nostate.pth", _info(32), fmt="sre2l-cifar")
    _one_line(err)
    with pytest.raises(FastDistillError, match="does not exist"):
        load_teacher(tmp_path / "absent.pth", _info(32), fmt="rded")


def test_format_and_teacher_must_agree(layouts, tmp_path):
    path = layouts["rded-convnet"][0]
    with pytest.raises(FastDistillError, match="goes with --teacher torchvision:NAME"):
        load_teacher(path, _info(16), fmt="torchvision")
    with pytest.raises(FastDistillError, match="pass the checkpoint file itself"):
        load_teacher("torchvision:resnet18", _info(32), fmt="rded")
    with pytest.raises(FastDistillError, match="--teacher-weights goes with"):
        load_teacher(path, _info(16), weights=path, fmt="rded")
    with pytest.raises(FastDistillError, match="takes a checkpoint file"):
        load_teacher(tmp_path, _info(32), fmt="rded")


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1)):
        for c in CLASSES:
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                    tmp_path / "data" / split / c / f"{i}.png")
    return tmp_path / "data"


def test_delt_and_evaluate_run_with_a_reference_checkpoint(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("fastdistill.pipelines.delt.teacher.SANITY_FACTOR", 0.0)  # a random teacher
    torch.manual_seed(0)
    ckpt = tmp_path / "cifar10_conv3.pth"
    torch.save({"model": _rded_convnet_state(ConvNet(3, 10, 16, depth=3, norm="batch"))}, ckpt)
    out = tmp_path / "out"
    common = ["delt", "--dataset", "imagefolder", "--data-root", str(folder), "--image-size", "16", "--teacher",
              str(ckpt), "--ipc", "1", "--iterations", "2", "--round-iterations", "1", "--batch-size", "10",
              "--no-eval", "--output", str(out), "--device", "cpu"]
    assert main([*common, "--teacher-format", "rded"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["inputs"]["teacher"] == f"{file_sha256(ckpt)} (rded)"
    assert config["config"]["teacher_format"] == "rded" and config["resolved"]["teacher_format"] == "rded"
    # the same file read as another format is another teacher: --resume refuses it
    capsys.readouterr()
    assert main([*common, "--teacher-format", "sre2l-tiny", "--resume"]) == 2
    assert "--resume with a different teacher" in capsys.readouterr().err
    # `evaluate` reloads the run's teacher in its recorded format
    assert main(["evaluate", str(out), "--protocols", "soft", "--seeds", "1", "--epochs", "1", "--device",
                 "cpu", "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["teacher"] == str(ckpt)


def test_teacher_format_without_teacher_is_refused(tmp_path, capsys):
    rc = main(["delt", "--teacher-format", "rded", "--output", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "pass --teacher too" in err and not (tmp_path / "o").exists()


def test_teacher_format_is_for_the_delt_base_only(tmp_path, capsys):
    rc = main(["pdd", "--base", "dm", "--teacher-format", "rded", "--output", str(tmp_path / "o"), "--device", "cpu"])
    assert rc == 2 and "for the teacher of --base delt" in capsys.readouterr().err
