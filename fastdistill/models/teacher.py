"""Teacher checkpoints: weights as safetensors plus a JSON sidecar (architecture, classes, normalization, accuracy)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from fastdistill.data.base import DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.models.reference_teachers import REFERENCE_FORMATS, load_reference_state, reference_model
from fastdistill.models.registry import build_model
from fastdistill.models.subset_logits import fit_classes
from fastdistill.models.torchvision_teacher import Renormalized, is_torchvision, load_torchvision_teacher
from fastdistill.utils.io import atomic_path, payload_bytes, read_json, write_json

WEIGHTS, META = "teacher.safetensors", "teacher.json"
# --teacher-format: fastdistill (a `squeeze` folder), torchvision (torchvision:NAME), or a reference repository's file
TEACHER_FORMATS = ("fastdistill", "torchvision", *REFERENCE_FORMATS)


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


def teacher_format(teacher: str | Path | None, fmt: str | None = None) -> str:
    """The format of ``teacher``: ``fmt`` if given (checked against the teacher), else torchvision for
    ``torchvision:NAME`` and fastdistill otherwise."""
    tv = is_torchvision(None if teacher is None else str(teacher))
    if teacher is None and fmt is not None:
        raise FastDistillError(f"--teacher-format {fmt} says how --teacher is stored; pass --teacher too")
    if fmt is None:
        return "torchvision" if tv else "fastdistill"
    if fmt not in TEACHER_FORMATS:
        raise FastDistillError(f"unknown --teacher-format {fmt!r}; use one of {', '.join(TEACHER_FORMATS)}")
    if tv and fmt != "torchvision":
        raise FastDistillError(f"--teacher {teacher} is a torchvision model; with --teacher-format {fmt} pass the "
                               "checkpoint file itself as --teacher FILE")
    if fmt == "torchvision" and not tv:
        raise FastDistillError("--teacher-format torchvision goes with --teacher torchvision:NAME (its weights file "
                               "in --teacher-weights)")
    return fmt


def load_teacher(path: str | Path, info: DatasetInfo, device: torch.device | str = "cpu",
                 weights: str | Path | None = None, fmt: str | None = None) -> tuple[nn.Module, dict]:
    """Load a frozen (eval, no-grad) teacher and check it fits the dataset: class count, names, channels, input size.

    ``path``: a `squeeze` folder or weights file, ``torchvision:NAME`` (then ``weights``: its state-dict file,
    default the torch hub cache's; see ``torchvision_teacher``), or with ``fmt`` rded / sre2l-cifar / sre2l-tiny a
    reference repository's checkpoint file (``reference_teachers``). A 1000-class ImageNet teacher on a subset of
    ImageNet-1K's classes is restricted to them (``subset_logits``); ``meta["classes"]`` says so.
    """
    fmt = teacher_format(path, fmt)
    if fmt == "torchvision":
        return load_torchvision_teacher(str(path), info, device, weights)
    if weights is not None:
        raise FastDistillError("--teacher-weights goes with --teacher torchvision:NAME; a `squeeze` teacher folder "
                               "or a reference checkpoint holds its own weights")
    if fmt in REFERENCE_FORMATS:
        return _load_reference_teacher(Path(path), info, device, fmt)
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


def _load_reference_teacher(path: Path, info: DatasetInfo, device: torch.device | str, fmt: str
                            ) -> tuple[nn.Module, dict]:
    """A teacher from a reference repository's checkpoint file (see ``reference_teachers``), reading ``info``'s
    normalization."""
    model, arch, classes = reference_model(load_reference_state(path, fmt), info, f"teacher checkpoint {path} ({fmt})")
    spec = REFERENCE_FORMATS[fmt]
    if (tuple(info.mean), tuple(info.std)) != (spec.mean, spec.std):
        model = Renormalized(model, info.mean, info.std, spec.mean, spec.std)
    model, class_note = fit_classes(model, classes, info, f"{path} ({fmt})")
    model.to(device).eval().requires_grad_(False)
    return model, {"arch": arch, "format": fmt, "weights": str(path), "mean": list(spec.mean), "std": list(spec.std),
                   "dataset": info.to_dict(), "classes": class_note}
