"""ResNet-18 with the CIFAR stem (3x3 stride-1 conv1, no max-pool), as used for 32x32 and 64x64 teachers."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18


class CifarResNet18(nn.Module):
    """torchvision ResNet-18 with ``conv1`` = 3x3/1 on ``channels`` inputs and ``maxpool`` = Identity."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.net = net
        self.embed_dim = net.fc.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.relu(n.bn1(n.conv1(x)))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return torch.flatten(n.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.features(x))
