"""Build a classifier by name.

- ``convnet{D}[-bn|-in|-none]``: ConvNet-D, width 128 (default norm: instance, the DC protocol network);
- ``resnet18-cifar``: ResNet-18 with the CIFAR stem;
- any torchvision classification model name (``resnet50``, ``mobilenet_v2``, ...), randomly initialised; inputs with
  fewer than 3 channels are repeated to 3.
"""

from __future__ import annotations

import re

import torch
import torchvision
from torch import nn

from fastdistill.errors import FastDistillError
from fastdistill.models.convnet import ConvNet
from fastdistill.models.resnet import CifarResNet18

_CONVNET = re.compile(r"^convnet(\d+)(?:-(bn|in|none))?$")
_NORM = {None: "instance", "in": "instance", "bn": "batch", "none": "none"}


class _RepeatChannels(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def available_architectures() -> list[str]:
    return ["convnet3", "convnet3-bn", "convnet4-bn", "convnet3-none", "resnet18-cifar", "<torchvision model name>"]


def build_model(arch: str, num_classes: int, channels: int, image_size: int) -> nn.Module:
    """A randomly initialised classifier for ``channels x image_size x image_size`` inputs."""
    arch = arch.lower()
    m = _CONVNET.match(arch)
    if m:
        return ConvNet(channels, num_classes, image_size, depth=int(m.group(1)), norm=_NORM[m.group(2)])
    if arch == "resnet18-cifar":
        return CifarResNet18(channels, num_classes)
    if arch in torchvision.models.list_models(module=torchvision.models):
        if channels not in (1, 3):
            raise FastDistillError(f"torchvision model {arch} takes 1- or 3-channel images, the data has {channels}")
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        return _RepeatChannels(model) if channels == 1 else model
    raise FastDistillError(f"unknown architecture {arch!r}; use one of {', '.join(available_architectures())}")
