"""Teachers from torchvision (``--teacher torchvision:NAME``): weights from the torch hub cache or a given file.

Nothing is downloaded: the weights are the file torchvision's ``Weights.DEFAULT.url`` names, in
``torch.hub.get_dir()/checkpoints``, or ``--teacher-weights FILE`` (a state dict; ``.safetensors`` or a
``torch.save`` file read with ``weights_only=True``, possibly nested under ``model`` as torchvision's reference
training script saves it). The model reads inputs normalized with its weights' mean/std; on data normalized otherwise
it is wrapped (``Renormalized``) so that DELT's normalized tensors mean the same pixels. A 1000-class model on a
subset of ImageNet-1K's classes is restricted to them (``subset_logits``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from fastdistill.data.base import DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.models.reference_teachers import extract_state, read_checkpoint
from fastdistill.models.subset_logits import fit_classes

PREFIX = "torchvision:"


def is_torchvision(teacher: str | None) -> bool:
    """Whether ``teacher`` names a torchvision model (``torchvision:NAME``)."""
    return teacher is not None and str(teacher).startswith(PREFIX)


def _weights_enum(name: str):
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise FastDistillError(f"torchvision has no classification model {name!r}; use one of "
                               f"torchvision.models.list_models(module=torchvision.models), e.g. resnet18")
    return tvm.get_model_weights(name).DEFAULT


def hub_file(name: str) -> Path:
    """Where torch hub keeps the default weights of torchvision model ``name``."""
    url = _weights_enum(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def weights_file(teacher: str, weights: str | Path | None = None) -> Path:
    """The weights file of ``torchvision:NAME``: ``weights`` if given, else the hub cache's; one line if absent."""
    name = teacher[len(PREFIX):]
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FastDistillError(f"--teacher-weights {path} does not exist")
        return path
    path = hub_file(name)
    if not path.is_file():
        raise FastDistillError(f"no weights for {teacher} (nothing is downloaded): put {_weights_enum(name).url} at "
                               f"{path}, or pass --teacher-weights FILE")
    return path


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict, or one nested as torchvision's reference training script saves it (``{"model": ...}``)."""
    return extract_state(read_checkpoint(path), ("model", "state_dict"), f"teacher weights {path}")


def _classes_of(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> int:
    """Classes ``state`` predicts: the output size of ``model``'s classifier (its last weight) in ``state``."""
    head = [k for k in model.state_dict() if k.endswith("weight")][-1]
    if head not in state:
        raise FastDistillError(f"teacher weights {path} lack the classifier {head!r}; pass a state dict of this model")
    return int(state[head].shape[0])


class Renormalized(nn.Module):
    """``model`` fed with data normalized by (``mean_in``, ``std_in``) re-normalized to (``mean``, ``std``)."""

    def __init__(self, model: nn.Module, mean_in, std_in, mean, std):
        super().__init__()
        t = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)  # noqa: E731
        self.register_buffer("scale", t(std_in) / t(std))
        self.register_buffer("shift", (t(mean_in) - t(mean)) / t(std))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.scale + self.shift)


def load_pretrained(teacher: str, weights: str | Path | None = None) -> tuple[nn.Module, tuple, tuple]:
    """``torchvision:NAME`` with its weights and its own classifier (any class count), unfrozen on the CPU, and the
    mean/std its weights read; for uses that need only its features (diversity)."""
    import torchvision.models as tvm

    name = teacher[len(PREFIX):]
    transform = _weights_enum(name).transforms()
    path = weights_file(teacher, weights)
    state = _read_state(path)
    model = tvm.get_model(name, weights=None, num_classes=_classes_of(tvm.get_model(name, weights=None), state, path))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise FastDistillError(f"weights {path} do not match torchvision {name} "
                               f"({str(exc).splitlines()[0][:120]})") from exc
    return model, tuple(transform.mean), tuple(transform.std)


def load_torchvision_teacher(teacher: str, info: DatasetInfo, device: torch.device | str = "cpu",
                             weights: str | Path | None = None) -> tuple[nn.Module, dict]:
    """A frozen torchvision teacher for ``info`` and its metadata (arch, weights file, mean/std it reads)."""
    import torchvision.models as tvm

    name = teacher[len(PREFIX):]
    default = _weights_enum(name)
    path = weights_file(teacher, weights)
    if info.channels != 3:
        raise FastDistillError(f"{teacher} takes RGB images, {info.name} has {info.channels} channel(s)")
    state = _read_state(path)
    classes = _classes_of(tvm.get_model(name, weights=None), state, path)
    transform = default.transforms()
    mean, std = tuple(transform.mean), tuple(transform.std)
    model = tvm.get_model(name, weights=None, num_classes=classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise FastDistillError(f"teacher weights {path} do not match torchvision {name} "
                               f"({str(exc).splitlines()[0][:120]})") from exc
    if (tuple(info.mean), tuple(info.std)) != (mean, std):
        model = Renormalized(model, info.mean, info.std, mean, std)
    model, class_note = fit_classes(model, classes, info, f"{teacher} ({path.name})")
    model.to(device).eval().requires_grad_(False)
    return model, {"arch": teacher, "weights": str(path), "mean": list(mean), "std": list(std),
                   "dataset": info.to_dict(), "classes": class_note}
