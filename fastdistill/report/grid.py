"""The labelled grid a report shows: the run's ``grid.png``, or one drawn from ``distilled.pt`` when the run has none
or when its grid is too large to embed (then the first classes that fit, and the report says so)."""

from __future__ import annotations

import math
from pathlib import Path

from fastdistill.pipelines.outputs import GRID_PADDING, save_grid
from fastdistill.report.runs import GRID, mapped_record

MAX_PIXELS = 8_000_000  # an embedded grid larger than this (ImageNet: about 15 classes at 224 px) is cut
MIN_SIDE, PER_ROW = 64, 10  # as save_grid draws them


def classes_that_fit(image_side: int, per_row: int, num_classes: int, max_pixels: int | None = None) -> int:
    """How many class rows of ``save_grid``'s layout fit in ``max_pixels`` (default :data:`MAX_PIXELS`; at least
    one)."""
    side = image_side * max(1, math.ceil(MIN_SIDE / image_side)) + GRID_PADDING
    budget = MAX_PIXELS if max_pixels is None else max_pixels
    return max(1, min(num_classes, budget // (side * side * max(1, per_row))))


def report_grid(run_dir: Path, file: Path) -> tuple[bytes | None, str]:
    """The grid PNG for the report of ``run_dir`` and a note (empty when the grid shows every class); a grid that
    has to be drawn goes to ``file``."""
    existing = run_dir / GRID
    record = mapped_record(run_dir)
    if record is None:
        return (existing.read_bytes(), "") if existing.is_file() else (None, "")
    images, labels, classes = record["images"], record["labels"].long(), list(record["classes"])
    per_row = min(PER_ROW, int(labels.bincount().max()) if labels.numel() else 1)
    fit = classes_that_fit(int(images.shape[-1]), per_row, len(classes))
    if fit == len(classes) and existing.is_file():
        return existing.read_bytes(), ""
    keep = (labels < fit).nonzero().flatten()
    save_grid(file, images[keep], labels[keep], fit, class_names=classes[:fit])
    note = "" if fit == len(classes) else f"the first {fit} of {len(classes)} classes (all of them: {existing})"
    return file.read_bytes(), note
