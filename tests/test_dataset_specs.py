"""Dataset specs: every registered dataset is complete, and one new entry makes a dataset usable everywhere."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fastdistill.augment.dsa import dsa_strategy_for
from fastdistill.cli import main
from fastdistill.data import DATASET_SPECS, Dataset, DatasetPresets, DatasetSpec, Split, dataset_spec, load_dataset
from fastdistill.data.specs import default_teacher_arch, mirror_symmetric, teacher_arch_for
from fastdistill.errors import FastDistillError
from fastdistill.eval.protocols import PROTOCOLS, default_epochs, make_protocol
from fastdistill.methods.config import MethodConfig
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.presets import METHODS, resolve
from fastdistill.models import build_model
from fastdistill.pipelines.squeeze import SqueezeConfig


@pytest.mark.parametrize("name", sorted(DATASET_SPECS))
def test_registered_spec_is_complete(name):
    spec = dataset_spec(name)
    assert spec.name == name and callable(spec.loader)
    assert spec.channels in (1, 3) and spec.image_size > 0
    assert len(spec.mean) == len(spec.std) == spec.channels and all(s > 0 for s in spec.std)
    presets = spec.presets
    assert set(presets.delt) <= {f.name for f in dataclasses.fields(DELTConfig)} - {"flip", "teacher_arch", "dataset"}
    assert set(presets.methods) <= set(METHODS)
    method_fields = {f.name for f in dataclasses.fields(MethodConfig)}
    assert all(set(values) <= method_fields for values in presets.methods.values())
    assert set(presets.eval_epochs) <= set(PROTOCOLS)
    arch = teacher_arch_for(name)
    build_model(arch, 10, spec.channels, spec.image_size)  # the default teacher builds at the spec's geometry
    assert DELTConfig.for_dataset(name).teacher_arch == arch


def test_no_flip_datasets_are_the_digit_sets():
    assert {name for name, spec in DATASET_SPECS.items() if not spec.mirror_symmetric} == {"digits", "mnist"}
    for name in DATASET_SPECS:
        flips = mirror_symmetric(name)
        assert ("flip" in dsa_strategy_for(name)) == flips
        assert DELTConfig.for_dataset(name).flip == flips


def test_default_teacher_by_resolution():
    assert default_teacher_arch(8) == default_teacher_arch(32) == default_teacher_arch(64) == "resnet18-cifar"
    assert default_teacher_arch(65) == default_teacher_arch(224) == "resnet18"
    assert teacher_arch_for("imagefolder") == "resnet18"  # 224 px by default
    assert teacher_arch_for("imagefolder", 64) == "resnet18-cifar"
    assert DELTConfig.for_dataset("imagefolder", image_size=32).teacher_arch == "resnet18-cifar"
    assert teacher_arch_for("cifar10") == "resnet18-cifar" and teacher_arch_for("digits") == "convnet3-bn"
    assert teacher_arch_for("in-memory", 128) == "resnet18"  # a dataset outside the registry: by its size
    with pytest.raises(FastDistillError, match="'in-memory' is not a registered dataset: give its image size"):
        DELTConfig.for_dataset("in-memory")
    assert DELTConfig.for_dataset("in-memory", teacher_arch="convnet3-bn").teacher_arch == "convnet3-bn"


def test_dataset_outside_the_registry_gets_every_default():
    assert SqueezeConfig().resolved_epochs("in-memory") == 30
    assert default_epochs("hard", "in-memory") == default_epochs("soft", "in-memory") == 300
    assert "flip" in dsa_strategy_for("in-memory")
    assert resolve("dm", "in-memory", 10, 1, {}).iterations == 20000
    with pytest.raises(FastDistillError, match="unknown dataset 'in-memory'; choose one of"):
        load_dataset("in-memory")


def _load_fake(spec: DatasetSpec, root: str | None, download: bool, image_size: int | None, access) -> Dataset:
    size = image_size or spec.image_size
    images = torch.arange(4 * spec.channels * size * size, dtype=torch.int64).remainder(256).to(torch.uint8)
    split = Split(images.view(4, spec.channels, size, size), torch.tensor([0, 1, 0, 1]))
    return Dataset(spec.info(("left", "right"), size), split, split, source=root or "memory")


FAKE = DatasetSpec("fake", _load_fake, 3, 96, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), mirror_symmetric=False,
                   presets=DatasetPresets(teacher_epochs=7, delt={"iterations": 40, "round_iterations": 20},
                                          methods={"dm": {"iterations": 3}}, eval_epochs={"soft": 9},
                                          buffer_batch=16))


def test_one_new_spec_makes_a_dataset_usable(monkeypatch):
    monkeypatch.setitem(DATASET_SPECS, "fake", FAKE)
    ds = load_dataset("fake", root="somewhere", image_size=12)
    assert ds.info.name == "fake" and ds.info.classes == ("left", "right") and ds.info.image_size == 12
    assert ds.info.mean == FAKE.mean and ds.source == "somewhere"
    assert load_dataset("fake").info.image_size == 96
    assert SqueezeConfig().resolved_epochs("fake") == 7
    delt = DELTConfig.for_dataset("fake")
    assert (delt.iterations, delt.round_iterations, delt.flip, delt.teacher_arch) == (40, 20, False, "resnet18")
    assert DELTConfig.for_dataset("fake", image_size=12).teacher_arch == "resnet18-cifar"
    assert resolve("dm", "fake", 10, 1, {}).iterations == 3 and resolve("dc", "fake", 10, 1, {}).iterations == 1000
    assert default_epochs("soft", "fake") == 9 and default_epochs("hard", "fake") == 300
    hard = make_protocol("hard", ds.info, 4)
    assert "flip" not in hard.dsa_strategy and not hard.flip


def test_one_new_spec_reaches_the_commands(monkeypatch, tmp_path):
    monkeypatch.setitem(DATASET_SPECS, "fake", FAKE)  # before the parser is built: --dataset choices come from it
    out = tmp_path / "buffer"
    assert main(["buffer", "--dataset", "fake", "--image-size", "8", "--experts", "1", "--epochs", "1", "--arch",
                 "convnet1", "--output", str(out), "--quiet"]) == 0
    meta = json.loads((out / "buffer.json").read_text())
    assert meta["batch_size"] == 16 and meta["dataset"]["name"] == "fake" and meta["dataset"]["image_size"] == 8
