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


def test_delt_skips_and_counts_a_corrupt_file_with_skip_corrupt(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    wnids = ["n01440764", "n01443537", "n01484850"]
    for split, n in (("train", 3), ("val", 1)):
        for wnid in wnids:
            (tmp_path / "data" / split / wnid).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "data" / split / wnid / f"{i}.JPEG")
    (tmp_path / "data" / "train" / wnids[1] / "0.JPEG").write_bytes(b"\xff\xd8 truncated")
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), weights)
    monkeypatch.setattr("fastdistill.pipelines.delt.teacher.SANITY_FACTOR", 0.0)
    argv = ["delt", "--dataset", "imagefolder", "--data-root", str(tmp_path / "data"), "--image-size", "8",
            "--teacher", "torchvision:resnet18", "--teacher-weights", str(weights), "--iterations", "1",
            "--round-iterations", "1", "--batch-size", "3", "--workers", "0", "--no-eval", "--device", "cpu"]
    assert main([*argv, "--ipc", "2", "--output", str(tmp_path / "stops")]) == 2
    assert "0.JPEG" in capsys.readouterr().err
    assert main([*argv, "--ipc", "3", "--skip-corrupt", "--output", str(tmp_path / "short")]) == 2
    assert "--ipc 3 is larger than class 1's 2 training images" in capsys.readouterr().err
    assert main([*argv, "--ipc", "2", "--skip-corrupt", "--output", str(tmp_path / "run")]) == 0
    broken = tmp_path / "data" / "train" / wnids[1] / "0.JPEG"
    assert f"--skip-corrupt: skipped 1 corrupt or unreadable image(s), the first: {broken}" in capsys.readouterr().out
    chosen = torch.load(tmp_path / "run" / "progress" / "selection.pt", weights_only=True)["chosen"]
    assert sorted(chosen[1].tolist()) == [4, 5]  # position 3 (the broken file) is never selected
