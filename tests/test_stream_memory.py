"""CI-sized run of ``benchmarks/bench_stream_memory.py``: DELT's peak host memory on a streamed image folder does not
grow with the train split (generous bound; the benchmark itself runs 1000 classes at 20 vs 100 images per class)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torchvision")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stream_memory.py"


def test_peak_rss_of_delt_is_flat_in_the_train_split(tmp_path):
    argv = [sys.executable, str(SCRIPT), "--classes", "20", "--small", "2", "--large", "30", "--image-size", "32",
            "--workers", "1", "--no-throughput", "--max-ratio", "1.5", "--root", str(tmp_path / "work")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["delt"]["large"]["train_images"] == 600 and report["delt"]["small"]["train_images"] == 40
    assert report["peak_rss_ratio"] < 1.5
