"""The shipped ImageNet class lists, and a 1000-class teacher restricted to a subset's logits."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from fastdistill.cli import main
from fastdistill.data import load_dataset
from fastdistill.data.base import DatasetInfo
from fastdistill.data.imagenet_classes import SUBSETS, imagenet1k_wnids, imagenet_classes, subset_name, subset_wnids
from fastdistill.data.stats import IMAGENET_MEAN, IMAGENET_STD
from fastdistill.errors import FastDistillError
from fastdistill.models.subset_logits import SubsetLogits, fit_classes
from fastdistill.models.teacher import load_teacher

COUNTS = {"imagenette": 10, "imagewoof": 10, "imageidc": 10, "imagenet100": 100}


def test_shipped_lists_have_their_sizes_and_are_imagenet1k_ids():
    wnids = imagenet1k_wnids()
    assert len(wnids) == len(set(wnids)) == 1000 and list(wnids) == sorted(wnids)
    for stem, count in COUNTS.items():
        ids = subset_wnids(stem)
        assert len(ids) == len(set(ids)) == count and set(ids) <= set(wnids)
        assert subset_name(ids) == SUBSETS[stem]
    assert subset_wnids("imageidc") == subset_wnids("imagenet100")[:10]  # IDC's ImageNet-10: its list's first ten
    assert subset_name(wnids) == "ImageNet-1K" and subset_name(wnids[:7]) == "a 7-class subset of ImageNet-1K"
    with pytest.raises(FastDistillError, match="unknown ImageNet subset"):
        subset_wnids("imagenet-21k")


def test_lists_agree_with_the_mgd_mappings():
    """The MGD³ class maps (folder -> ImageNet-1K index, for DiT) name the same classes at the same indices."""
    wnids = imagenet1k_wnids()
    for stem in ("imagenette", "imagewoof", "imageidc"):
        text = resources.files("fastdistill.pipelines.mgd").joinpath("mappings", f"{stem}.json").read_text()
        mapping = json.loads(text)["classes"]
        assert set(mapping) == set(subset_wnids(stem))
        assert all(wnids[i] == w for w, i in mapping.items())


def _info(classes) -> DatasetInfo:
    return DatasetInfo("imagefolder", tuple(classes), 3, 8, IMAGENET_MEAN, IMAGENET_STD)


def test_subset_logits_select_in_the_datas_order_and_pass_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 1000))
    classes = sorted(subset_wnids("imagewoof"))
    found = imagenet_classes(classes)
    assert found is not None and found.name == "ImageWoof" and not found.is_identity
    wrapped = SubsetLogits(model, found.indices)
    x = torch.randn(3, 3, 2, 2, requires_grad=True)
    out = wrapped(x)
    index = [imagenet1k_wnids().index(c) for c in classes]
    assert torch.equal(out, model(x)[:, index])
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert "indices" not in wrapped.state_dict()  # the teacher's state dict stays the model's


def test_fit_classes_keeps_restricts_or_refuses():
    model = nn.Linear(4, 1000)
    kept, note = fit_classes(model, 1000, _info(imagenet1k_wnids()), "t")
    assert kept is model and note.startswith("ImageNet-1K")
    restricted, note = fit_classes(model, 1000, _info(sorted(subset_wnids("imagenette"))), "t")
    assert isinstance(restricted, SubsetLogits) and note.startswith("ImageNette:")
    _, note = fit_classes(model, 1000, _info(subset_wnids("imagenet100")), "t")
    assert note.startswith("ImageNet-100:")
    # 1000 classes not named by WordNet id (RDED's 00000..00999 folders): taken in ImageNet-1K's order
    assert fit_classes(model, 1000, _info([f"{i:05d}" for i in range(1000)]), "t") == (model, None)
    assert fit_classes(nn.Linear(4, 10), 10, _info([f"c{i}" for i in range(10)]), "t")[1] is None
    with pytest.raises(FastDistillError, match="predicts 1000 classes but imagefolder has 3, and its class folders "
                                               "cat, dog, cow are not ImageNet-1K WordNet ids") as err:
        fit_classes(model, 1000, _info(["cat", "dog", "cow"]), "t")
    assert "\n" not in str(err.value)
    with pytest.raises(FastDistillError, match="n01440765 are not ImageNet-1K WordNet ids"):
        fit_classes(model, 1000, _info(["n01440764", "n01440765"]), "t")
    with pytest.raises(FastDistillError, match="mixes names: its class folders x are not"):
        fit_classes(model, 1000, _info([*imagenet1k_wnids()[:999], "x"]), "t")
    with pytest.raises(FastDistillError, match="predicts 100 classes but imagefolder has 10"):
        fit_classes(nn.Linear(4, 100), 100, _info(subset_wnids("imagenette")), "t")


@pytest.fixture
def nette(tmp_path):
    """An ImageNette-named folder of tiny images."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1)):
        for c in subset_wnids("imagenette"):
            (tmp_path / "nette" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                    tmp_path / "nette" / split / c / f"{i}.png")
    return tmp_path / "nette"


def test_a_1000_class_torchvision_teacher_runs_delt_on_imagenette(nette, tmp_path, monkeypatch):
    torch.manual_seed(0)
    full = torchvision.models.resnet18().eval()  # 1000 classes
    weights = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), weights)
    ds = load_dataset("imagefolder", str(nette), False, 16)
    teacher, meta = load_teacher("torchvision:resnet18", ds.info, "cpu", weights=weights)
    assert isinstance(teacher, SubsetLogits) and meta["classes"].startswith("ImageNette:")
    x = torch.randn(2, 3, 16, 16)
    index = [imagenet1k_wnids().index(c) for c in ds.info.classes]
    with torch.no_grad():
        assert torch.equal(teacher(x), full(x)[:, index])

    monkeypatch.setattr("fastdistill.pipelines.delt.teacher.SANITY_FACTOR", 0.0)  # a random teacher
    out = tmp_path / "out"
    assert main(["delt", "--dataset", "imagefolder", "--data-root", str(nette), "--image-size", "16", "--teacher",
                 "torchvision:resnet18", "--teacher-weights", str(weights), "--ipc", "1", "--iterations", "2",
                 "--round-iterations", "1", "--batch-size", "10", "--no-eval", "--output", str(out),
                 "--device", "cpu"]) == 0
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["teacher_format"] == "torchvision" and resolved["teacher_classes"].startswith("ImageNette:")
