"""Teacher checkpoints: weights as safetensors plus a JSON sidecar (architecture, classes, normalization, accuracy)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from fastdistill.data.base import DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.models.registry import build_model
from fastdistill.models.torchvision_teacher import is_torchvision, load_torchvision_teacher
from fastdistill.utils.io import atomic_path, payload_bytes, read_json, write_json

WEIGHTS, META = "teacher.safetensors", "teacher.json"


def save_teacher(folder: str | Path, model: nn.Module, arch: str, info: DatasetInfo, **meta: object) -> Path:
    """Write ``teacher.safetensors`` and ``teacher.json`` into ``folder``; returns the folder."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = _non_finite(state)
    if bad:
        raise FastDistillError(f"refusing to save the teacher to {folder / WEIGHTS}: {bad} holds NaN/inf (training "
                               "diverged); retrain with a lower --lr")
    with atomic_path(folder / WEIGHTS, needed=payload_bytes(state)) as tmp:
        tmp.write_bytes(save(state))
    write_json(folder / META, {"arch": arch, "dataset": info.to_dict(), **meta})
    return folder


def _non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor in ``state`` holding NaN or inf, if any."""
    for name, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def teacher_files(path: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) of a teacher folder or weights file; a one-line error when either is missing."""
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


def load_teacher(path: str | Path, info: DatasetInfo, device: torch.device | str = "cpu",
                 weights: str | Path | None = None) -> tuple[nn.Module, dict]:
    """Load a frozen (eval, no-grad) teacher and check it fits the dataset: class count, names, channels, input size.

    ``path``: a `squeeze` folder or weights file, or ``torchvision:NAME`` (then ``weights``: its state-dict file,
    default the torch hub cache's; see ``torchvision_teacher``).
    """
    if is_torchvision(str(path)):
        return load_torchvision_teacher(str(path), info, device, weights)
    if weights is not None:
        raise FastDistillError("--teacher-weights goes with --teacher torchvision:NAME; a `squeeze` teacher folder "
                               "holds its own weights")
    weights, meta_path = teacher_files(path)
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or not isinstance(meta.get("arch"), str) or not isinstance(meta.get("dataset"), dict):
        raise FastDistillError(f"teacher metadata {meta_path} lacks 'arch' or 'dataset'; it is written by "
                               "`fastdistill squeeze`: retrain the teacher or restore that file")
    trained = meta["dataset"]
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
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        what = "empty" if weights.stat().st_size == 0 else "truncated or corrupt"
        raise FastDistillError(f"teacher weights {weights} cannot be read ({what}); retrain the teacher with "
                               "`fastdistill squeeze` or copy the file again") from exc
    bad = _non_finite(state)
    if bad:
        raise FastDistillError(f"teacher weights {weights} hold NaN/inf (in {bad}); its training diverged: retrain "
                               "it with a lower --lr")
    try:
        model.load_state_dict(state)
    except (RuntimeError, OSError) as exc:
        raise FastDistillError(f"teacher weights {weights} do not match architecture {meta['arch']} "
                               f"({str(exc).splitlines()[0][:120]})") from exc
    model.to(device).eval().requires_grad_(False)
    return model, meta
