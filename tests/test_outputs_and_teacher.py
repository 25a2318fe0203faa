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
from fastdistill.pipelines import outputs
from fastdistill.pipelines.outputs import load_distilled, save_distilled, save_grid

INFO = DatasetInfo("toy", ("cat", "dog/wolf", "fish"), 3, 9, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def _pixels(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 9, 9, generator=g), torch.tensor([0, 0, 1, 2, 2, 2, 1])


@pytest.mark.parametrize("bitmap_font", [False, True])
def test_grid_labels_every_row_and_upscales_tiny_images(tmp_path, monkeypatch, bitmap_font):
    if bitmap_font:  # Pillow without FreeType (or < 10.1): the fixed-size bitmap default font
        monkeypatch.setattr(outputs, "_grid_font", lambda row_height: outputs.ImageFont.load_default_imagefont())
    images = torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(20) % 10
    save_grid(tmp_path / "grid.png", images, labels, 10, class_names=[str(c) for c in range(10)])
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("L"))
    tile, pad = 64, 2  # 8x8 digits upscaled x8 (nearest), 2-pixel padding
    height, width = grid.shape
    label_width = width - (2 * (tile + pad) + pad)
    assert height == 10 * (tile + pad) + pad and 5 <= label_width <= 60
    for r in range(10):
        row = grid[pad + r * (tile + pad):(r + 1) * (tile + pad), :label_width]
        assert (row < 128).any(), f"row {r} has no label"
    first = grid[pad:pad + tile, label_width + pad:label_width + pad + tile]
    assert np.array_equal(first, np.kron(images[0, 0].numpy(), np.ones((8, 8), dtype=np.uint8)))
    save_grid(tmp_path / "named.png", images, labels, 10, class_names=[f"class number {c}" for c in range(10)])
    assert Image.open(tmp_path / "named.png").size[0] > width  # longer names, wider label column


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
    with pytest.raises(FastDistillError, match="cannot be read"):
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
