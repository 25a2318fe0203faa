"""Save/load round trips: distilled-set outputs and teacher checkpoints, and the checks on loading."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fastdistill.data import DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.models import build_model
from fastdistill.models.teacher import load_teacher, save_teacher
from fastdistill.pipelines.outputs import load_distilled, save_distilled

INFO = DatasetInfo("toy", ("cat", "dog/wolf", "fish"), 3, 9, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def _pixels(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 9, 9, generator=g), torch.tensor([0, 0, 1, 2, 2, 2, 1])


def test_png_round_trip_is_exact(tmp_path):
    pixels, labels = _pixels()
    rec = save_distilled(tmp_path, pixels, labels, INFO, tags=[f"s{i % 2}" for i in range(7)], extra={"stage": labels})
    back = load_distilled(tmp_path)
    assert torch.equal(back["images"], (pixels * 255).round().byte())
    assert torch.equal(back["labels"], labels) and back["classes"] == list(INFO.classes)
    assert torch.equal(back["stage"], labels) and torch.equal(rec["images"], back["images"])
    folders = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert folders == ["000_cat", "001_dog_wolf", "002_fish"]
    files = sorted(p.name for p in (tmp_path / "images" / "002_fish").iterdir())
    assert files == ["0000_s1.png", "0001_s0.png", "0002_s1.png"]
    img = Image.open(tmp_path / "images" / "001_dog_wolf" / "0000_s0.png")
    assert torch.equal(torch.from_numpy(np.array(img)).permute(2, 0, 1), back["images"][2])
    assert Image.open(tmp_path / "grid.png").size[0] >= 64
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary leftovers


def test_jpeg_compat_truncates_and_stores_decoded_pixels(tmp_path):
    _, labels = _pixels()
    ramp = torch.linspace(0, 1, 9)
    pixels = (ramp[None, None, :, None] * ramp[None, None, None, :]).expand(7, 3, 9, 9).contiguous()
    back = save_distilled(tmp_path, pixels, labels, INFO, image_format="jpeg", truncate=True)
    decoded = torch.from_numpy(np.array(Image.open(tmp_path / "images" / "000_cat" / "0000.jpg")))
    assert torch.equal(back["images"][0], decoded.permute(2, 0, 1))
    truncated = (pixels * 255).floor()
    assert (back["images"].float() - truncated).abs().mean() < 4  # lossy, but close to the truncated pixels


def test_load_distilled_errors(tmp_path):
    with pytest.raises(FastDistillError, match="not found"):
        load_distilled(tmp_path)
    (tmp_path / "distilled.pt").write_bytes(b"garbage")
    with pytest.raises(FastDistillError, match="unreadable"):
        load_distilled(tmp_path)


def test_teacher_round_trip_and_checks(tmp_path):
    model = build_model("convnet3-bn", 3, 3, 9)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    save_teacher(tmp_path / "t", model, "convnet3-bn", INFO, test_accuracy=12.5)
    loaded, meta = load_teacher(tmp_path / "t", INFO)
    x = torch.randn(4, 3, 9, 9)
    model.eval()
    assert torch.equal(loaded(x), model(x)) and meta["test_accuracy"] == 12.5
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    other = DatasetInfo("toy", ("a", "b"), 3, 9, INFO.mean, INFO.std)
    with pytest.raises(FastDistillError, match="predicts 3 classes"):
        load_teacher(tmp_path / "t", other)
    renamed = DatasetInfo("toy", ("cat", "fish", "dog/wolf"), 3, 9, INFO.mean, INFO.std)
    with pytest.raises(FastDistillError, match="class order"):
        load_teacher(tmp_path / "t", renamed)
    bigger = DatasetInfo("toy", INFO.classes, 3, 16, INFO.mean, INFO.std)
    with pytest.raises(FastDistillError, match="9px"):
        load_teacher(tmp_path / "t", bigger)
    with pytest.raises(FastDistillError, match="not found"):
        load_teacher(tmp_path / "missing", INFO)
    meta_path = tmp_path / "t" / "teacher.json"
    meta = json.loads(meta_path.read_text())
    meta["arch"] = "convnet4-bn"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FastDistillError, match="do not match architecture"):
        load_teacher(tmp_path / "t", INFO)
