"""Teacher checkpoints: weights as safetensors plus a JSON sidecar (architecture, classes, normalization, accuracy)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fastdistill.data.base import DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.models.registry import build_model
from fastdistill.utils.io import atomic_path, read_json, write_json

WEIGHTS, META = "teacher.safetensors", "teacher.json"


def save_teacher(folder: str | Path, model: nn.Module, arch: str, info: DatasetInfo, **meta: object) -> Path:
    """Write ``teacher.safetensors`` and ``teacher.json`` into ``folder``; returns the folder."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_json(folder / META, {"arch": arch, "dataset": info.to_dict(), **meta})
    return folder


def _resolve(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.is_dir():
        weights, meta = path / WEIGHTS, path / META
    else:
        weights, meta = path, path.with_suffix(".json")
    if not weights.exists():
        raise FastDistillError(f"teacher weights not found at {weights}; train one with "
                               "`fastdistill squeeze --dataset D --arch A --output DIR`, then pass --teacher DIR")
    if not meta.exists():
        raise FastDistillError(f"teacher metadata {meta} is missing; it is written by `fastdistill squeeze`")
    return weights, meta


def load_teacher(path: str | Path, info: DatasetInfo, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Load a frozen (eval, no-grad) teacher and check it fits the dataset: class count, names, channels, input size."""
    weights, meta_path = _resolve(path)
    meta = read_json(meta_path)
    trained = meta.get("dataset", {})
    if len(trained.get("classes", [])) != info.num_classes:
        raise FastDistillError(f"teacher {path} predicts {len(trained.get('classes', []))} classes but {info.name} has "
                               f"{info.num_classes}; use a teacher trained on this dataset")
    if list(trained["classes"]) != list(info.classes):
        raise FastDistillError(f"teacher {path} was trained with a different class order/names than {info.name}; "
                               "retrain it or use the same class folders")
    if (trained.get("channels"), trained.get("image_size")) != (info.channels, info.image_size):
        raise FastDistillError(f"teacher {path} takes {trained.get('channels')}x{trained.get('image_size')}px inputs, "
                               f"the data is {info.channels}x{info.image_size}px; use a matching teacher")
    model = build_model(meta["arch"], info.num_classes, info.channels, info.image_size)
    try:
        model.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as exc:
        raise FastDistillError(f"teacher weights {weights} do not match architecture {meta['arch']} "
                               f"({str(exc).splitlines()[0][:120]})") from exc
    model.to(device).eval().requires_grad_(False)
    return model, meta
