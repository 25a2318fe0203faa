"""End to end on an ImageNet-shaped folder: 1000 WordNet-named classes of tiny JPEGs, streamed, distilled by DELT
with a torchvision ResNet-18 teacher read from a state-dict file."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch
from PIL import Image

from fastdistill.cli import main

torchvision = pytest.importorskip("torchvision")


def imagenet_folder(root, per_class: dict[str, int], side: int = 20, seed: int = 0):
    """train/ and val/ folders of the 1000 ImageNet-1K WordNet ids with ``per_class[split]`` tiny JPEGs each."""
    wnids = resources.files("fastdistill.data.classes").joinpath("imagenet1k_wnids.txt").read_text().split()
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for c, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                base = rng.integers(0, 256, 3)
                pixels = (base + rng.integers(-20, 21, (side, side, 3))).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{c * n + i}.JPEG", quality=85)
    return root


def test_delt_on_a_1000_class_imagefolder_with_a_torchvision_resnet18(tmp_path, monkeypatch):
    data = imagenet_folder(tmp_path / "imagenet", {"train": 2, "val": 1})
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)  # randomly initialised
    # a random teacher cannot pass DELT's accuracy sanity check: lifted here only
    monkeypatch.setattr("fastdistill.pipelines.delt.teacher.SANITY_FACTOR", 0.0)
    out = tmp_path / "run"
    assert main(["delt", "--dataset", "imagefolder", "--data-root", str(data), "--image-size", "16",
                 "--teacher", "torchvision:resnet18", "--teacher-weights", str(weights), "--ipc", "1",
                 "--iterations", "1", "--round-iterations", "1", "--batch-size", "100", "--workers", "2",
                 "--no-eval", "--device", "cpu", "--output", str(out)]) == 0
    record = torch.load(out / "distilled.pt", weights_only=True)
    assert record["images"].shape == (1000, 3, 16, 16) and torch.equal(record["labels"], torch.arange(1000))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 1000 and summary["selection_seconds"] > 0
    assert len(list((out / "progress" / "scores").glob("scores_*.pt"))) == 1  # 2000 images: one chunk
