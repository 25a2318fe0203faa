"""Teacher checkpoints of the reference repositories (``--teacher FILE --teacher-format rded|sre2l-cifar|sre2l-tiny``).

Layouts (read in the reference code; the state dict may also carry a ``module.`` / ``_orig_mod.`` / ``model.``
prefix, which is removed):

- ``rded``: LINs-lab/RDED ``data/pretrain_models/{dataset}_{arch}.pth`` (``synthesize/utils.py`` ``load_model``), also
  the teachers of VILA-Lab/DELT (``recover/recover.py``): ``{"model": state_dict, ...}`` of a ConvNet-D (RDED's
  ``synthesize/models.py``: ``layers.conv.{d}``, ``layers.norm.{d}`` (batch norm), ``classifier``), a ResNet-18-modified
  (torchvision ResNet-18 keys, 3x3 stride-1 ``conv1``, no max-pool) or a torchvision ResNet-18 (7x7 ``conv1``).
  Trained on ImageNet's mean/std for every dataset (RDED normalizes everything with them).
- ``sre2l-cifar``: VILA-Lab/SRe2L ``*small_dataset/squeeze_cifar.py``: ``{"state_dict": DataParallel state dict
  ("module." keys), "acc", "epoch"}`` of a ResNet-18-modified, trained on CIFAR-10's mean/std (for CIFAR-100 too).
- ``sre2l-tiny``: SRe2L's Tiny-ImageNet teachers (zeyuanyin/tiny-imagenet ``classification/train.py``, torchvision's
  reference script): ``{"model": state_dict, "optimizer", "lr_scheduler", "epoch", "args" (an argparse.Namespace),
  ["model_ema", "scaler"]}`` of a ResNet-18-modified, trained on Tiny-ImageNet's mean/std.

The architecture (ConvNet depth and width, ResNet-18 stem) and the class count are read from the tensors' names and
shapes and mapped onto fastdistill's models (``ConvNet``, ``CifarResNet18``, torchvision ``resnet18``); files load with
``torch.load(weights_only=True)`` (``argparse.Namespace`` allowed: torchvision's script stores its arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from fastdistill.data.base import DatasetInfo
from fastdistill.data.stats import IMAGENET_MEAN, IMAGENET_STD
from fastdistill.errors import FastDistillError
from fastdistill.models.convnet import ConvNet
from fastdistill.models.resnet import CifarResNet18

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
TINY_IMAGENET_STATS = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))
_PREFIXES = ("module.", "_orig_mod.", "model.")  # DataParallel/DDP, torch.compile, Lightning-style wrappers
_SHOWN = 3  # key names an error message lists


@dataclass(frozen=True)
class ReferenceFormat:
    """Where a reference checkpoint keeps its state dict and the mean/std its teacher was trained on."""

    name: str
    nests: tuple[str, ...]  # keys the state dict may sit under, tried in order (else the file is the state dict)
    mean: tuple[float, ...]
    std: tuple[float, ...]


REFERENCE_FORMATS = {
    "rded": ReferenceFormat("rded", ("model", "state_dict"), IMAGENET_MEAN, IMAGENET_STD),
    "sre2l-cifar": ReferenceFormat("sre2l-cifar", ("state_dict", "model"), *CIFAR10_STATS),
    "sre2l-tiny": ReferenceFormat("sre2l-tiny", ("model", "state_dict"), *TINY_IMAGENET_STATS),
}


def read_checkpoint(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` (argparse.Namespace allowed), or a safetensors file; one-line errors."""
    if not path.is_file():
        raise FastDistillError(f"teacher checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise FastDistillError(f"teacher checkpoint {path} cannot be read ({_first_line(exc)})") from exc
    try:
        with _namespace_allowed():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling raises many types; all mean "cannot be read safely"
        hint = ("; it holds objects other than tensors: load it once with torch.load(weights_only=False) if you trust "
                "it and save just the state dict") if "weights_only" in str(exc) else ""
        raise FastDistillError(f"teacher checkpoint {path} cannot be read with weights_only=True "
                               f"({_first_line(exc)}){hint}") from exc


def _namespace_allowed():
    """A context in which ``weights_only`` unpickling accepts ``argparse.Namespace`` (plain attributes)."""
    scoped = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    if scoped is not None:
        return scoped([argparse.Namespace])
    torch.serialization.add_safe_globals([argparse.Namespace])
    return contextlib.nullcontext()


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:160]


def _is_state(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state(obj: object, nests: tuple[str, ...], where: str) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint (under one of ``nests``, or the file itself), prefixes removed."""
    state = None
    if _is_state(obj):
        state = obj
    elif isinstance(obj, dict):
        state = next((obj[k] for k in nests if k in obj and _is_state(obj[k])), None)
    if state is None:
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
        raise FastDistillError(f"{where} holds no state dict (name -> tensor) at the top or under "
                               f"{' / '.join(repr(k) for k in nests)} (found: {keys}); check --teacher-format")
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return dict(state)


def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


# (model, arch, file key -> model key, model key -> file key)
_Mapped = tuple[nn.Module, str, Callable[[str], str], Callable[[str], str]]


def _convnet(state: dict[str, torch.Tensor], info: DatasetInfo, where: str) -> _Mapped:
    depth = len({k for k in state if re.fullmatch(r"layers\.conv\.\d+\.weight", k)})
    width = int(state["layers.conv.0.weight"].shape[0])
    if "layers.norm.0.running_mean" not in state:
        raise FastDistillError(f"{where} is a ConvNet without batch-norm running statistics; RDED's ConvNet teachers "
                               "use batch norm (net_norm='batch'): pass a checkpoint of one")
    head = state.get("classifier.weight")
    if head is None:
        raise FastDistillError(f"{where} lacks classifier.weight; pass a whole RDED ConvNet checkpoint")
    side = info.image_size
    for _ in range(depth):
        side = side // 2 if side >= 2 else side
    if head.shape[1] != width * side * side:
        trained = round((head.shape[1] / width) ** 0.5) * 2 ** depth
        raise FastDistillError(f"{where} is a ConvNet-{depth} for {trained}x{trained}px inputs (its classifier takes "
                               f"{head.shape[1]} features), the data is {info.image_size}px; pass --image-size "
                               f"{trained}")
    model = ConvNet(info.channels, int(head.shape[0]), info.image_size, depth=depth, width=width, norm="batch")
    convs = [i for i, m in enumerate(model.body) if isinstance(m, nn.Conv2d)]
    norms = [i for i, m in enumerate(model.body) if isinstance(m, nn.BatchNorm2d)]

    def rename(key: str) -> str:
        m = re.fullmatch(r"layers\.(conv|norm)\.(\d+)\.(.+)", key)
        if m and int(m.group(2)) < depth:
            return f"body.{(convs if m.group(1) == 'conv' else norms)[int(m.group(2))]}.{m.group(3)}"
        return key

    def reference_name(key: str) -> str:
        m = re.fullmatch(r"body\.(\d+)\.(.+)", key)
        if m and int(m.group(1)) in convs + norms:
            i = int(m.group(1))
            return f"layers.conv.{convs.index(i)}.{m.group(2)}" if i in convs else \
                f"layers.norm.{norms.index(i)}.{m.group(2)}"
        return key

    arch = f"convnet{depth}-bn" + ("" if width == 128 else f" (width {width})")
    return model, arch, rename, reference_name


def _resnet18(state: dict[str, torch.Tensor], info: DatasetInfo, where: str) -> _Mapped:
    extra = [k for k in state if re.match(r"layer\d\.[2-9]\.|layer\d\.\d+\.conv3\.", k)]
    if extra:
        raise FastDistillError(f"{where} is a ResNet deeper than ResNet-18 ({_shown(extra)}); only ResNet-18, "
                               "ResNet-18-modified and ConvNet reference checkpoints load")
    if "fc.weight" not in state:
        raise FastDistillError(f"{where} lacks fc.weight; pass a whole ResNet-18 checkpoint")
    classes = int(state["fc.weight"].shape[0])
    if state["conv1.weight"].shape[-1] == 3:  # ResNet-18-modified: 3x3 stride-1 conv1, no max-pool
        return (CifarResNet18(info.channels, classes), "resnet18-cifar", lambda key: f"net.{key}",
                lambda key: key.removeprefix("net."))
    return torchvision.models.resnet18(weights=None, num_classes=classes), "resnet18", lambda key: key, lambda key: key


def reference_model(state: dict[str, torch.Tensor], info: DatasetInfo, where: str) -> tuple[nn.Module, str, int]:
    """A fastdistill model holding a reference ``state`` (ConvNet-D or ResNet-18[-modified]): (model, arch, classes)."""
    if info.channels != 3:
        raise FastDistillError(f"reference teachers take RGB images, {info.name} has {info.channels} channel(s)")
    if "layers.conv.0.weight" in state:
        model, arch, rename, reference_name = _convnet(state, info, where)
    elif "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        model, arch, rename, reference_name = _resnet18(state, info, where)
    else:
        raise FastDistillError(f"{where} is neither a ConvNet (layers.conv.0.weight) nor a ResNet-18 (conv1.weight, "
                               f"layer1.*) checkpoint; its first keys: {_shown(list(state))}")
    mapped = {rename(k): v for k, v in state.items()}
    expected = model.state_dict()
    for key, value in expected.items():  # old checkpoints may lack the BN batch counters
        if key.endswith("num_batches_tracked") and key not in mapped:
            mapped[key] = value
    missing = [reference_name(k) for k in expected if k not in mapped]  # named as the file names them
    unexpected = [k for k in state if rename(k) not in expected]
    if missing or unexpected:
        parts = ([f"missing {_shown(missing)}"] if missing else []) + (
            [f"unexpected {_shown(unexpected)}"] if unexpected else [])
        raise FastDistillError(f"{where} does not match {arch}: {'; '.join(parts)}; check --teacher-format")
    wrong = [f"{reference_name(k)} {tuple(mapped[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if mapped[k].shape != v.shape]
    if wrong:
        raise FastDistillError(f"{where} does not match {arch}: shapes (file vs model) {_shown(wrong)}")
    # a sum is NaN/inf iff a value is (or it overflows, which finite weights do not): one pass, no mask tensor
    bad = next((k for k, v in mapped.items()
                if v.is_floating_point() and not bool(torch.isfinite(v.sum(dtype=torch.float64)))), None)
    if bad:
        raise FastDistillError(f"{where} holds NaN/inf (in {reference_name(bad)}); its training diverged: use another "
                               "checkpoint")
    model.load_state_dict(mapped)
    classes = int(mapped["classifier.weight" if arch.startswith("convnet") else
                         ("net.fc.weight" if arch == "resnet18-cifar" else "fc.weight")].shape[0])
    return model, arch, classes


def load_reference_state(path: str | Path, fmt: str) -> dict[str, torch.Tensor]:
    """The state dict of a reference checkpoint in format ``fmt`` (a key of :data:`REFERENCE_FORMATS`)."""
    path = Path(path)
    if path.is_dir():
        raise FastDistillError(f"--teacher-format {fmt} takes a checkpoint file, {path} is a folder")
    return extract_state(read_checkpoint(path), REFERENCE_FORMATS[fmt].nests, f"teacher checkpoint {path} ({fmt})")
