"""DELT's normalization per mode: compat reproduces the reference's teacher-vs-recover pairing, fast uses one."""

import dataclasses

import pytest
import torch

import fastdistill.pipelines.delt.pipeline as delt_pipeline
from fastdistill.data.base import Dataset, DatasetInfo, Split
from fastdistill.data.stats import IMAGENET_MEAN, IMAGENET_STD
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.delt.initial import reference_view, selection_input
from fastdistill.methods.delt.normalization import (
    CIFAR10_STATS,
    ImageNetReadingTeacher,
    compat_recover_info,
)
from fastdistill.models import build_model

CIFAR100_OWN = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def _info(name="cifar100", stats=CIFAR100_OWN, size=8, classes=2):
    return DatasetInfo(name, tuple(str(c) for c in range(classes)), 3, size, *stats)


def _teacher(channels=3, size=8, classes=2):
    torch.manual_seed(0)
    return build_model("convnet3-bn", classes, channels, size).eval().requires_grad_(False)


def test_compat_recovers_cifar100_in_cifar10_statistics_and_others_in_their_own():
    assert (compat_recover_info(_info()).mean, compat_recover_info(_info()).std) == CIFAR10_STATS
    assert (compat_recover_info(_info("cifar10", CIFAR10_STATS)).mean) == CIFAR10_STATS[0]
    digits = DatasetInfo("digits", ("0", "1"), 1, 8, (0.3053,), (0.3758,))
    assert compat_recover_info(digits) == digits


def test_wrapped_teacher_reads_its_input_as_imagenet_normalized():
    info, teacher = _info(), _teacher()
    x = torch.randn(4, 3, 8, 8)
    pixels = x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(ImageNetReadingTeacher(teacher, info)(x), teacher(info.normalize(pixels)))
    imagenet = _info("imagefolder", (IMAGENET_MEAN, IMAGENET_STD))
    torch.testing.assert_close(ImageNetReadingTeacher(teacher, imagenet)(x), teacher(x))


@pytest.mark.parametrize("mode", ["fast", "compat"])
def test_selection_scores_with_the_teachers_own_normalization(mode):
    info = _info(size=14)
    images = torch.randint(0, 256, (3, 3, 14, 14), dtype=torch.uint8)
    ds = Dataset(info, Split(images, torch.zeros(3, dtype=torch.long)), Split(images, torch.zeros(3, dtype=torch.long)))
    view = reference_view(images, 14) if mode == "compat" else images.float() / 255
    torch.testing.assert_close(selection_input(ds, mode)(images), info.normalize(view))


@pytest.mark.parametrize("mode", ["fast", "compat"])
def test_recover_gets_the_modes_space_and_teacher(tmp_path, monkeypatch, mode):
    info = _info()
    gen = torch.Generator().manual_seed(0)
    train = Split(torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=gen), torch.arange(8) % 2)
    ds = Dataset(info, train, train)
    teacher = _teacher()
    monkeypatch.setattr(delt_pipeline, "obtain_teacher", lambda *a: (teacher, "t"))
    seen = {}

    def fake_recover(x0, labels, groups, schedule, model, cfg, bounds, *a, **k):
        seen.update(x0=x0.clone(), model=model, bounds=bounds)
        return x0

    monkeypatch.setattr(delt_pipeline, "recover", fake_recover)
    cfg = DELTConfig.for_dataset("cifar100", ipc=2, iterations=2, round_iterations=1, batch_size=4, mode=mode)
    out = delt_pipeline.run_delt(ds, cfg, tmp_path, torch.device("cpu"), progress=False)
    space = dataclasses.replace(info, mean=CIFAR10_STATS[0], std=CIFAR10_STATS[1]) if mode == "compat" else info
    lo, hi = space.bounds()
    torch.testing.assert_close(seen["bounds"][0], lo)
    torch.testing.assert_close(seen["bounds"][1], hi)
    assert isinstance(seen["model"], ImageNetReadingTeacher) == (mode == "compat")
    assert out["summary"]["recover_normalization"] == {"mean": list(space.mean), "std": list(space.std),
                                                       "teacher_reads_as_imagenet": mode == "compat"}
    scaled = space.denormalize(seen["x0"]) * 255  # initial images decode to their 8-bit pixels in the recover space
    torch.testing.assert_close(scaled, scaled.round(), atol=1e-3, rtol=0)
