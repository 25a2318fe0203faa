"""Streamed image folders: layouts, corrupt files, the decoded cache, and take/batches against a direct decode."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from fastdistill.data import load_dataset
from fastdistill.data.base import SKIPPED, Split
from fastdistill.data.decode import decode_image
from fastdistill.data.folder_split import FolderSplit
from fastdistill.errors import FastDistillError

CLASSES = ["n01440764", "n02102040", "n02979186"]


def _jpeg(path, rng, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


def _imagenet_like(root, per_class=(4, 2), rng=None):
    rng = rng or np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class, strict=True):
        for c in CLASSES:
            for i in range(n):
                _jpeg(root / split / c / f"{c}_{i}.JPEG", rng)
    return root


def _load(root, size=8, **kw):
    kw.setdefault("workers", 0)
    return load_dataset("imagefolder", str(root), image_size=size, **kw)


def _all(split, batch=3, **kw):
    return torch.cat([x for _, x, _ in split.batches(batch, **kw)])


def _error(fn):
    with pytest.raises(FastDistillError) as err:
        fn()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_imagenet_layout_is_indexed_not_decoded(tmp_path):
    root = _imagenet_like(tmp_path / "d")
    _jpeg(root / "train" / CLASSES[1] / "nested" / "deep.jpeg", np.random.default_rng(1))
    (root / "train" / CLASSES[1] / "notes.txt").write_text("not an image")
    ds = _load(root, cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.train, FolderSplit) and ds.info.classes == tuple(CLASSES)
    assert ds.train.labels.tolist() == [0] * 4 + [1] * 5 + [2] * 4 and ds.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.train.counts(3).tolist() == [4, 5, 4] and not (tmp_path / "cache").exists()  # nothing decoded
    assert ds.train.index.path(4).name == f"{CLASSES[1]}_0.JPEG"


def test_tiny_imagenet_layout(tmp_path):
    rng, root = np.random.default_rng(0), tmp_path / "tiny"
    for c in CLASSES:
        for i in range(2):
            _jpeg(root / "train" / c / "images" / f"{c}_{i}.JPEG", rng)
        (root / "train" / c / f"{c}_boxes.txt").write_text("")
    notes = []
    for i, c in enumerate([CLASSES[2], CLASSES[0], CLASSES[2], CLASSES[1]]):
        _jpeg(root / "val" / "images" / f"val_{i}.JPEG", rng)
        notes.append(f"val_{i}.JPEG\t{c}\t0\t0\t10\t10")
    (root / "val" / "val_annotations.txt").write_text("\n".join(notes) + "\n")
    ds = _load(root)
    assert ds.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.test.labels.tolist() == [0, 1, 2, 2]
    assert [ds.test.index.path(i).name for i in range(4)] == ["val_1.JPEG", "val_3.JPEG", "val_0.JPEG", "val_2.JPEG"]
    first = decode_image(root / "val" / "images" / "val_1.JPEG", 8)
    assert np.array_equal(ds.test.take([0])[0].numpy(), first)

    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    assert "n99999999, which has no train/ folder" in _error(lambda: _load(root))
    (root / "val" / "val_annotations.txt").unlink()
    assert "val_annotations.txt" in _error(lambda: _load(root))


def test_other_layouts_are_one_line_errors(tmp_path):
    rng = np.random.default_rng(0)
    assert "has no train/ and val/ folder" in _error(lambda: _load(tmp_path))
    root = _imagenet_like(tmp_path / "a", per_class=(1, 0))
    for i in range(3):  # ImageNet's raw val/: loose files, no class folders
        _jpeg(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", rng)
    assert "val holds 3 images but no class folders" in _error(lambda: _load(root))
    root = _imagenet_like(tmp_path / "b", per_class=(1, 1))
    (root / "val" / "n09999999").mkdir()
    assert "only in val/: n09999999" in _error(lambda: _load(root))


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_file_stops_with_one_line(tmp_path, workers):
    root = _imagenet_like(tmp_path / "d")
    (root / "train" / CLASSES[1] / "broken.JPEG").write_bytes(b"\xff\xd8 not a jpeg")
    ds = _load(root, workers=workers, cache_dir=str(tmp_path / "cache"))
    for read in (lambda: _all(ds.train), lambda: ds.train.take([4]), ds.train.decoded):
        line = _error(read)
        assert "corrupt or unreadable image" in line and "broken.JPEG" in line and "--skip-corrupt" in line
    assert not os.listdir(tmp_path / "cache")  # no partial cache left


def test_skip_corrupt_skips_counts_and_never_lets_the_file_join_a_class(tmp_path):
    root = _imagenet_like(tmp_path / "d")
    broken = root / "train" / CLASSES[1] / "broken.JPEG"
    broken.write_bytes(b"\xff\xd8 not a jpeg")  # position 4: first of class 1
    kw = {"skip_corrupt": True, "cache_dir": str(tmp_path / "cache")}
    ds = _load(root, **kw)
    assert ds.train.counts(3).tolist() == [4, 5, 4]  # not known before it is read
    seen = {o: (x, y) for o, x, y in ds.train.batches(3)}
    assert seen[3][1].tolist() == [0, SKIPPED, 1] and seen[3][0][1].eq(0).all()
    assert ds.train.labels[4] == SKIPPED and ds.train.counts(3).tolist() == [4, 4, 4]
    assert 4 not in ds.train.class_indices(1).tolist() and ds.train.skipped == [broken]
    # the cache records it: a new process learns it from there, and one without --skip-corrupt stops on it
    assert ds.train.decoded().labels[4] == SKIPPED
    again = _load(root, **kw)
    assert again.train.take([4]).eq(0).all() and again.train.labels[4] == SKIPPED
    assert "broken.JPEG" in _error(lambda: _load(root, cache_dir=kw["cache_dir"]).train.take([0]))


def test_decoded_cache_equals_direct_decoding_and_batches(tmp_path):
    root = _imagenet_like(tmp_path / "d")
    ds = _load(root, size=12, workers=2, cache_dir=str(tmp_path / "cache"))
    direct = torch.stack([torch.from_numpy(decode_image(ds.train.index.path(i), 12)) for i in range(len(ds.train))])
    streamed = _all(ds.train)
    decoded = ds.train.decoded()
    assert isinstance(decoded, Split) and isinstance(decoded.images, torch.Tensor)
    assert torch.equal(streamed, direct) and torch.equal(decoded.images, direct)
    assert torch.equal(decoded.labels, ds.train.labels)
    files = sorted(os.listdir(tmp_path / "cache"))
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".u8")
    assert os.path.getsize(tmp_path / "cache" / files[1]) == direct.numel()


def test_folder_split_and_its_decoded_cache_agree_on_take_and_batches(tmp_path):
    root = _imagenet_like(tmp_path / "d", per_class=(5, 1))
    fresh = _load(root, cache_dir=str(tmp_path / "cache")).train
    cached = _load(root, cache_dir=str(tmp_path / "cache")).train
    decoded = cached.decoded()
    order = torch.tensor([14, 0, 3, 3, 9, -1])
    assert torch.equal(fresh.take(order), decoded.take(order)) and torch.equal(cached.take(order), fresh.take(order))
    for split in (fresh, cached, decoded):  # cached: read from the cache file now
        got = list(split.batches(4, start=2, stop=13))
        assert [o for o, _, _ in got] == [2, 6, 10] and [len(x) for _, x, _ in got] == [4, 4, 3]
        assert torch.equal(torch.cat([x for _, x, _ in got]), decoded.images[2:13])
        assert torch.equal(torch.cat([y for _, _, y in got]), decoded.labels[2:13])


def test_cache_is_rebuilt_for_a_changed_folder_or_other_settings(tmp_path):
    root = _imagenet_like(tmp_path / "d")
    cache = tmp_path / "cache"
    first = _load(root, cache_dir=str(cache))
    before = first.train.decoded().images.clone()
    _load(root, cache_dir=str(cache)).train.decoded()
    assert len(list(cache.glob("*.u8"))) == 1  # same folder, same settings: reused
    target = root / "train" / CLASSES[0] / f"{CLASSES[0]}_0.JPEG"
    _jpeg(target, np.random.default_rng(7))
    os.utime(target, ns=(1, 1))
    changed = _load(root, cache_dir=str(cache))
    assert changed.fingerprint != first.fingerprint
    after = changed.train.decoded().images
    assert len(list(cache.glob("*.u8"))) == 2
    assert not torch.equal(after[0], before[0]) and torch.equal(after[1:], before[1:])
    assert torch.equal(after[0], torch.from_numpy(decode_image(target, 8)))
    _load(root, size=10, cache_dir=str(cache)).train.decoded()
    assert len(list(cache.glob("*.u8"))) == 3


def test_an_incomplete_cache_is_not_read(tmp_path):
    root = _imagenet_like(tmp_path / "d")
    cache = tmp_path / "cache"
    _load(root, cache_dir=str(cache)).train.decoded()
    data = next(cache.glob("*.u8"))
    data.write_bytes(data.read_bytes()[:100])  # e.g. a copy cut short
    ds = _load(root, cache_dir=str(cache))
    assert torch.equal(ds.train.decoded().images[0], torch.from_numpy(decode_image(ds.train.index.path(0), 8)))
    assert data.stat().st_size == len(ds.train) * 3 * 8 * 8


def test_jpegs_are_decoded_at_reduced_size_close_to_a_full_decode(tmp_path):
    yy, xx = np.mgrid[0:240, 0:320]
    pixels = np.stack([xx * 255 // 320, yy * 255 // 240, (xx + yy) * 255 // 560], -1).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=95)
    with Image.open(tmp_path / "big.jpg") as im:
        assert im.draft("RGB", (32, 32)) is not None and im.size == (80, 60)  # 1/4 scale keeps both sides >= 32
    reduced = decode_image(tmp_path / "big.jpg", 32).astype(float)
    with Image.open(tmp_path / "big.jpg") as im:  # the same resize and crop from the full decode
        full = np.asarray(im.convert("RGB").resize((43, 32), Image.BICUBIC).crop((5, 0, 37, 32))).transpose(2, 0, 1)
    assert reduced.shape == (3, 32, 32) and np.abs(reduced - full).mean() < 3


def test_small_builtin_datasets_stay_in_memory():
    ds = load_dataset("digits")
    assert type(ds.train) is Split and ds.train.decoded() is ds.train
