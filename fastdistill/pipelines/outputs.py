"""The standard outputs of every pipeline.

- ``images/<ccc>_<class>/<kkkk>[_<tag>].png`` (ImageFolder layout; the class-index prefix keeps label order),
- ``distilled.pt``: ``{"images": uint8 [N,C,H,W], "labels": int64 [N], "classes": [...], "dataset": {...}, ...}``,
- ``grid.png``: one row per class, labelled with its index and name.
The tensor file holds exactly the pixels of the saved image files (after JPEG decoding in compat mode).
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from fastdistill.data.base import DatasetInfo, to_uint8
from fastdistill.errors import FastDistillError
from fastdistill.utils import distributed
from fastdistill.utils.io import atomic_path, ensure_dir, read_json, torch_load, torch_save, write_bytes

TENSORS = "distilled.pt"
GRID_PADDING = 2
LABEL_CHARS = 24  # longer grid labels are cut (with "...") to keep the label column narrow


def class_folder(index: int, name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"
    return f"{index:03d}_{safe}"


def _encode(img: np.ndarray, fmt: str, quality: int) -> tuple[bytes, np.ndarray]:
    """Encode one HWC/HW uint8 image; return the file bytes and the pixels a reader will decode."""
    pil = Image.fromarray(img)
    buf = io.BytesIO()
    if fmt == "png":
        pil.save(buf, format="PNG")
        return buf.getvalue(), img
    pil.save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    return buf.getvalue(), decoded


def save_distilled(run_dir: str | Path, pixels: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, *,
                   tags: list[str] | None = None, extra: dict | None = None, image_format: str = "png",
                   jpeg_quality: int = 75, truncate: bool = False) -> dict:
    """Write the distilled set (``pixels`` float in [0, 1], [N,C,H,W]) in every standard form; returns the tensor dict.

    ``image_format="jpeg"`` with ``truncate=True`` reproduces the reference codec (``astype(uint8)`` + JPEG q75).
    """
    if image_format not in ("png", "jpeg"):
        raise FastDistillError(f"image format must be png or jpeg, got {image_format}")
    run_dir = Path(run_dir)
    images = to_uint8(pixels.cpu(), truncate=truncate)
    labels = labels.cpu().long()
    stored = torch.empty_like(images)
    tmp_dir = run_dir / ".images.tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    counters: dict[int, int] = {}
    ext = "png" if image_format == "png" else "jpg"
    for i in range(images.shape[0]):
        c = int(labels[i])
        k = counters.get(c, 0)
        counters[c] = k + 1
        hwc = images[i].permute(1, 2, 0).numpy()
        data, decoded = _encode(hwc[..., 0] if hwc.shape[2] == 1 else hwc, image_format, jpeg_quality)
        stored[i] = torch.from_numpy(decoded.reshape(hwc.shape).copy()).permute(2, 0, 1)
        folder = tmp_dir / class_folder(c, info.classes[c])
        ensure_dir(folder)
        tag = f"_{tags[i]}" if tags else ""
        write_bytes(folder / f"{k:04d}{tag}.{ext}", data, needed=images.numel())
    final_dir = run_dir / "images"
    shutil.rmtree(final_dir, ignore_errors=True)
    tmp_dir.rename(final_dir)
    record = {"images": stored, "labels": labels, "classes": list(info.classes), "dataset": info.to_dict(),
              **(extra or {})}
    torch_save(run_dir / TENSORS, record)
    save_grid(run_dir / "grid.png", stored, labels, info.num_classes, class_names=info.classes)
    return record


def save_grid(path: str | Path, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
              max_per_class: int = 10, min_side: int = 64, class_names: Sequence[str] | None = None) -> None:
    """A PNG grid: one row per class (up to ``max_per_class`` images), upscaled (nearest neighbour) to at least
    ``min_side`` pixels so small images stay visible, each row labelled ``<index>: <name>`` in a left column (the
    index alone where the name is the index, as for digits)."""
    rows = []
    per_row = min(max_per_class, max(int((labels == c).sum()) for c in range(num_classes)) or 1)
    blank = torch.zeros_like(images[:1])
    for c in range(num_classes):
        sel = images[labels == c][:per_row]
        if sel.shape[0] < per_row:
            sel = torch.cat([sel, blank.expand(per_row - sel.shape[0], -1, -1, -1)])
        rows.append(sel)
    grid_in = torch.cat(rows).float() / 255
    scale = max(1, -(-min_side // grid_in.shape[-1]))
    if scale > 1:
        grid_in = torch.nn.functional.interpolate(grid_in, scale_factor=scale, mode="nearest")
    grid = make_grid(grid_in, nrow=per_row, padding=GRID_PADDING, pad_value=1.0)
    arr = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    names = [str(c) for c in range(num_classes)] if class_names is None else list(class_names)
    texts = [str(c) if n == str(c) else f"{c}: {n}" for c, n in enumerate(names)]
    labelled = _label_rows(Image.fromarray(arr).convert("RGB"), texts, grid_in.shape[-2] + GRID_PADDING)
    with atomic_path(path, needed=labelled.width * labelled.height * 3) as tmp:
        labelled.save(tmp, format="PNG")


def _grid_font(row_height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font, sized to the rows where FreeType is available (bitmap default otherwise)."""
    try:
        return ImageFont.load_default(size=max(11, min(24, row_height // 4)))
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _label_rows(grid: Image.Image, labels: list[str], row_height: int) -> Image.Image:
    """``grid`` with a white column on its left holding ``labels[r]`` centred on row ``r``'s height."""
    font = _grid_font(row_height)
    texts = [t if len(t) <= LABEL_CHARS else t[:LABEL_CHARS - 3] + "..." for t in labels]
    width = max(int(font.getlength(t)) for t in texts) + 3 * GRID_PADDING
    out = Image.new("RGB", (grid.width + width, grid.height), "white")
    out.paste(grid, (width, 0))
    draw = ImageDraw.Draw(out)
    for r, text in enumerate(texts):
        top, bottom = font.getbbox(text)[1::2]
        y = GRID_PADDING + r * row_height + (row_height - GRID_PADDING - top - bottom) // 2
        draw.text((GRID_PADDING, y), text, fill="black", font=font)
    return out


def load_distilled(path: str | Path) -> dict:
    """Read ``distilled.pt`` from a run folder (or the file itself) with ``weights_only=True``."""
    path = Path(path)
    file = path / TENSORS if path.is_dir() else path
    if not file.exists():
        raise FastDistillError(f"{file} not found; pass a run folder written by a fastdistill pipeline")
    record = torch_load(file, "it is not a readable distilled set: rerun the pipeline")
    for key in ("images", "labels", "classes"):
        if key not in record:
            raise FastDistillError(f"{file} lacks '{key}'; it was not written by fastdistill")
    return record


def read_finished_run(run_dir: Path) -> tuple[dict, dict]:
    """``(distilled.pt record, options)`` of a pipeline's run folder; options merge config.json's ``config`` and
    ``resolved`` (empty without config.json). One line when the folder or its dataset record is missing."""
    if not run_dir.is_dir():
        raise FastDistillError(f"run folder {run_dir} not found; pass the --output folder of a pipeline run")
    record = load_distilled(run_dir)
    recorded = record.get("dataset")
    if not isinstance(recorded, dict) or "name" not in recorded:
        raise FastDistillError(f"{run_dir}/distilled.pt does not record its dataset; rerun the pipeline")
    config_file = run_dir / "config.json"
    run_record = read_json(config_file) if config_file.exists() else {}
    return record, {**run_record.get("config", {}), **run_record.get("resolved", {})}


def save_on_main(run_dir: str | Path, save: Callable[[], dict]) -> dict:
    """Under torchrun rank 0 alone writes the outputs with ``save``; the other ranks wait and read back the record it
    wrote (``distilled.pt``). In one process: ``save()``."""
    record = distributed.agree(lambda: save() if distributed.is_main() else None)
    return record if distributed.is_main() else load_distilled(run_dir)
