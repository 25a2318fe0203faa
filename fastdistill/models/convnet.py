"""ConvNet-D: the DC/MTT evaluation network. D x [conv3x3(width) -> norm -> ReLU -> AvgPool2] -> linear."""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "instance", "none")


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(width)
    if kind == "instance":  # DC's "instancenorm": GroupNorm with one channel per group
        return nn.GroupNorm(width, width, affine=True)
    return nn.Identity()


class ConvNet(nn.Module):
    """ConvNet-D with width 128 by default; ``features`` is the flattened embedding before the classifier."""

    def __init__(self, channels: int, num_classes: int, image_size: int, depth: int = 3, width: int = 128,
                 norm: str = "instance"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        layers: list[nn.Module] = []
        size, in_ch = image_size, channels
        for _ in range(depth):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), _norm(norm, width), nn.ReLU(inplace=True)]
            if size >= 2:
                layers.append(nn.AvgPool2d(2, 2))
                size //= 2
            in_ch = width
        self.body = nn.Sequential(*layers)
        self.embed_dim = width * size * size
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
