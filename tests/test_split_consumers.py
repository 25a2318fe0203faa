"""Every consumer of real data outside DELT's selection reads a split only through its access interface (labels,
len, take, batches, decoded): run on a split that offers nothing else, whose decoded images are a memory map (as a
streamed ImageFolder split's are), each gives exactly what it gives on the in-memory split."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from fastdistill.data import load_dataset
from fastdistill.data.base import Dataset, Split, to_float
from fastdistill.eval.harness import evaluate_distilled, random_real_subset
from fastdistill.methods import RealData, flat_model
from fastdistill.methods.functional import stacked_accuracy, train_networks
from fastdistill.models.accuracy import split_batches
from fastdistill.pipelines.squeeze import SqueezeConfig, train_teacher
from fastdistill.utils.seed import generator


class InterfaceOnlySplit:
    """The access interface and nothing else; ``decoded()`` images are mapped from a file, not held in memory."""

    def __init__(self, split: Split, path):
        images = split.images
        images.contiguous().numpy().tofile(path)
        mapped = torch.from_file(str(path), shared=False, size=images.numel(), dtype=torch.uint8)
        # digits' [N, 1, 8, 8] tensor has channel stride 1, so it also counts as channels-last; keep that layout:
        # convolutions pick their kernel by layout, and another one would move the last bits of the results
        assert all(n == 1 or st == s for n, st, s in zip(images.shape, images.stride(),
                                                         images.contiguous().stride(), strict=True))
        self._decoded = Split(mapped.as_strided(images.shape, images.stride()), split.labels.clone())
        self.labels = self._decoded.labels
        self.reads = 0  # images handed out by take/batches

    def __len__(self) -> int:
        return len(self._decoded)

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        self.reads += len(indices)
        return self._decoded.take(indices)

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        for offset, images, labels in self._decoded.batches(batch_size, start, stop):
            self.reads += len(images)
            yield offset, images, labels

    def decoded(self) -> Split:
        return self._decoded


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture
def streamed(digits, tmp_path) -> Dataset:
    return Dataset(digits.info, InterfaceOnlySplit(digits.train, tmp_path / "train.u8"),
                   InterfaceOnlySplit(digits.test, tmp_path / "test.u8"), fingerprint="test")


def test_real_data_draws_the_same_batches_without_a_float_copy(digits, streamed):
    ref, new = RealData(digits.train, digits.info, "cpu"), RealData(streamed.train, digits.info, "cpu")
    assert not isinstance(new.x, torch.Tensor) and new.x.source.dtype == torch.uint8
    g1, g2 = generator(4), generator(4)
    assert torch.equal(ref.per_class(7, g1), new.per_class(7, g2))
    assert torch.equal(ref.init_images(3, g1), new.init_images(3, g2))
    # what RealData held before: every image normalized, sorted by class
    order = torch.argsort(digits.train.labels, stable=True)
    whole = digits.info.normalize(to_float(digits.train.images[order]))
    idx = torch.randint(0, len(whole), (3, 5), generator=generator(1))
    assert torch.equal(new.x[idx], whole[idx]) and new.x.shape == whole.shape
    assert torch.equal(new.y, digits.train.labels[order])
    fm = flat_model("convnet1", digits.info, "cpu")
    starts = fm.random_inits(1, generator(0))
    trained = [train_networks(fm, starts, x, new.y, 1, lr=0.01, generator=generator(2), batch_size=256)
               for x in (whole, new.x)]
    assert torch.equal(*trained)


def test_expert_accuracy_streams_the_test_split(digits, streamed):
    fm = flat_model("convnet1", digits.info, "cpu")
    flats = fm.random_inits(3, generator(0))

    def prepare(u8: torch.Tensor) -> torch.Tensor:
        return digits.info.normalize(to_float(u8))

    whole = stacked_accuracy(fm, flats, [(digits.test.images, digits.test.labels)], prepare)
    assert torch.equal(stacked_accuracy(fm, flats, split_batches(streamed.test, 100), prepare), whole)
    assert streamed.test.reads == len(digits.test)


def test_teacher_training_is_unchanged(digits, streamed):
    cfg = SqueezeConfig(arch="convnet1", epochs=1, batch_size=256, seed=3)
    ref_model, ref = train_teacher(digits, cfg, torch.device("cpu"), progress=False)
    model, got = train_teacher(streamed, cfg, torch.device("cpu"), progress=False)
    assert got == ref and streamed.test.reads == len(digits.test)
    for a, b in zip(ref_model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_evaluation_is_unchanged(digits, streamed):
    images, labels = random_real_subset(digits.train, torch.arange(10).repeat_interleave(2), seed=9)
    got = random_real_subset(streamed.train, labels, seed=9)
    assert torch.equal(got[0], images) and torch.equal(got[1], labels) and streamed.train.reads == 20

    def run(dataset: Dataset) -> dict:
        results = evaluate_distilled(images, labels, dataset, protocols=("hard",), seeds=1, epochs=2,
                                     student="convnet1", progress=False)
        return {which: results["protocols"]["hard"][which]["mean"] for which in ("distilled", "random_real")}

    assert run(streamed) == run(digits)


def test_mgd_latents_and_modes_from_one_streamed_pass(digits, streamed, tmp_path):
    from fastdistill.pipelines.mgd.latents import encode_cached
    from fastdistill.pipelines.mgd.models import PixelCodec
    from fastdistill.pipelines.mgd.modes import discover_modes

    codec, cpu, every = PixelCodec(1, 8), torch.device("cpu"), torch.arange(len(digits.train))
    ref = encode_cached(codec, digits.train, tmp_path / "a", 100, cpu, "digits")
    new = encode_cached(codec, streamed.train, tmp_path / "b", 100, cpu, "digits")
    assert torch.equal(new.take(every), ref.take(every)) and streamed.train.reads == len(digits.train)
    names = digits.info.classes
    assert torch.equal(discover_modes(new, streamed.train.labels, names, 2, seed=1),
                       discover_modes(ref.take(every).float(), digits.train.labels, names, 2, seed=1))


def test_pixel_diffusion_training_is_unchanged(digits, streamed, tmp_path):
    pytest.importorskip("diffusers")
    from fastdistill.pipelines.mgd.pixel_diffusion import PixelTrainConfig, train_pixel_diffusion

    cfg = PixelTrainConfig(steps=2, batch_size=8, width=8, checkpoint_every=2)
    runs = [tmp_path / "ref", tmp_path / "new"]
    for data, run in zip((digits, streamed), runs, strict=True):
        train_pixel_diffusion(data, run, cfg, torch.device("cpu"), progress=False)
    ref, new = (torch.load(run / "checkpoint.pt", weights_only=True) for run in runs)
    assert new["losses"] == ref["losses"]
    for k, v in ref["ema"].items():
        assert torch.equal(new["ema"][k], v), k
