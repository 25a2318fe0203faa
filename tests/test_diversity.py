"""Diversity measures (DELT's intra-class cosine, MGD³'s diversity / representativeness) and penultimate features."""

from __future__ import annotations

import math

import pytest
import torch

from fastdistill.data import DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.eval.diversity import (
    PerClass,
    cosine_matrix,
    intra_class_similarity,
    mean_pairwise_cosine,
    mgd_diversity,
    mgd_representativeness,
    penultimate_features,
    representativeness,
)
from fastdistill.models import build_model
from fastdistill.models.resnet import CifarResNet18

INFO = DatasetInfo("toy", ("a", "b", "c"), 3, 8, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def test_identical_images_have_similarity_one():
    f = torch.randn(1, 16).repeat(5, 1)
    assert mean_pairwise_cosine(f) == pytest.approx(1.0)
    assert mgd_diversity(f) == pytest.approx(0.0, abs=1e-12)
    assert mgd_representativeness(f, f[:1]) == pytest.approx(1.0)


def test_orthogonal_features_have_similarity_zero():
    f = torch.eye(4) * torch.tensor([1.0, 3.0, 0.5, 7.0]).unsqueeze(1)  # scale must not matter
    assert mean_pairwise_cosine(f) == pytest.approx(0.0, abs=1e-12)
    assert mgd_diversity(f) == pytest.approx(1.0)


def test_hand_computed_three_images():
    # unit vectors at 0°, 60° and 180°: cosines 0.5, -1, -0.5 -> mean over pairs i != j = -1/3
    f = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [-2.0, 0.0]])
    assert mean_pairwise_cosine(f) == pytest.approx(-1 / 3)
    assert mgd_diversity(f) == pytest.approx(0.5)
    # representativeness against one real image at 45°: rows 0 and 2 -> max cosines 1/sqrt2, -1/sqrt2 -> min -1/sqrt2;
    # rows 0 and 1 -> 1/sqrt2 and cos 15° -> min 1/sqrt2; a second real image at 180° lifts row 2 to 1
    real = torch.tensor([[1.0, 1.0]])
    assert mgd_representativeness(f[[0, 2]], real) == pytest.approx(-1 / math.sqrt(2))
    assert mgd_representativeness(f[[0, 1]], real) == pytest.approx(1 / math.sqrt(2))
    two_real = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])
    assert mgd_representativeness(f[[0, 2]], two_real) == pytest.approx(1 / math.sqrt(2))


def test_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(6, 10, generator=g, dtype=torch.float64)
    n = f / f.norm(dim=1, keepdim=True)
    direct = [float(n[i] @ n[j]) for i in range(6) for j in range(6) if i != j]
    assert mean_pairwise_cosine(f) == pytest.approx(sum(direct) / len(direct))
    assert mgd_diversity(f) == pytest.approx(1 - max(direct))
    torch.testing.assert_close(cosine_matrix(f), n @ n.T)


def test_per_class_and_mean_std():
    f = torch.cat([torch.randn(1, 8).repeat(3, 1), torch.eye(8)[:3]])
    labels = torch.tensor([2, 2, 2, 0, 0, 0])
    sim = intra_class_similarity(f, labels)
    assert sim.values == {0: pytest.approx(0.0, abs=1e-12), 2: pytest.approx(1.0)}
    assert sim.mean == pytest.approx(0.5) and sim.std == pytest.approx(0.5)
    assert sim.to_dict()["per_class"].keys() == {"0", "2"}
    assert PerClass({0: 0.2, 1: 0.4, 2: 0.9}).std == pytest.approx(torch.tensor([0.2, 0.4, 0.9]).std(correction=0))
    rep = representativeness(f, labels, torch.cat([f[:1], torch.eye(8)[:1]]), torch.tensor([2, 0]))
    assert rep.values == {0: pytest.approx(0.0, abs=1e-12), 2: pytest.approx(1.0)}


def test_bad_input():
    with pytest.raises(FastDistillError):
        mean_pairwise_cosine(torch.randn(1, 4))
    with pytest.raises(FastDistillError):
        intra_class_similarity(torch.randn(3, 4), torch.tensor([0, 0]))
    with pytest.raises(FastDistillError):
        representativeness(torch.randn(2, 4), torch.tensor([0, 0]), torch.randn(2, 4), torch.tensor([1, 1]))
    with pytest.raises(FastDistillError):
        penultimate_features(torch.nn.Conv2d(3, 3, 1), torch.zeros(2, 3, 8, 8, dtype=torch.uint8), INFO)
    with pytest.raises(FastDistillError):
        penultimate_features(build_model("convnet3", 3, 3, 8), torch.zeros(2, 3, 8, 8), INFO)


@pytest.mark.parametrize("arch", ["convnet3", "convnet3-bn"])
def test_penultimate_features_of_convnet(arch):
    torch.manual_seed(0)
    model = build_model(arch, 3, 3, 8)
    model.train()
    images = torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8)
    got = penultimate_features(model, images, INFO, batch_size=3)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        x = (images.float() / 255 - torch.tensor(INFO.mean).view(1, 3, 1, 1)) / torch.tensor(INFO.std).view(1, 3, 1, 1)
        manual = model.body(x).flatten(1)
    assert got.shape == (7, model.embed_dim)
    torch.testing.assert_close(got, manual)
    torch.testing.assert_close(model.classifier(got), model(x))


def test_penultimate_features_of_resnet():
    torch.manual_seed(0)
    model = CifarResNet18(3, 3).eval()
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    got = penultimate_features(model, images, INFO)
    with torch.no_grad():
        manual = model.features(INFO.normalize(images.float() / 255))
    torch.testing.assert_close(got, manual)
