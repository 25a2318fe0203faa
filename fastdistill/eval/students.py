"""Student architectures of a cross-architecture evaluation and their reference learning rates.

The soft-label (RDED/DELT) protocol trains every student with AdamW; DELT's evaluation/argument.py (VILA-Lab/DELT
f2f81ca, L258-288; spec delt.md §7) gives each student its own rate: 1e-3 for ResNet-18/50/101 and ConvNets, 2e-3
EfficientNet-B0, 2.5e-3 MobileNetV2, 5e-4 VGG-11, 1e-4 AlexNet, ViT-B/16 and Swin-V2-T. The hard-label (DC)
protocol uses SGD 0.01 for every network (DC-Bench ``--lr_net 0.01``). Students the tables do not name keep the
protocol's rate.
"""

from __future__ import annotations

import re

from fastdistill.errors import FastDistillError

# fastdistill architecture name (lower case) -> AdamW rate of DELT's table; ConvNets of any depth/norm are 1e-3.
SOFT_REFERENCE_LR = {
    "resnet18": 1e-3, "resnet18-cifar": 1e-3, "resnet50": 1e-3, "resnet101": 1e-3,
    "efficientnet_b0": 2e-3, "mobilenet_v2": 2.5e-3, "vgg11": 5e-4,
    "alexnet": 1e-4, "vit_b_16": 1e-4, "swin_v2_t": 1e-4,
}
_CONVNET = re.compile(r"^convnet\d+(-(bn|in|none))?$")
SOURCE = "DELT evaluation/argument.py L258-288 (spec delt.md §7)"


def reference_lr(kind: str, arch: str) -> float | None:
    """The reference's learning rate for ``arch`` under protocol ``kind`` (None: the protocol's own)."""
    if kind != "soft":
        return None
    arch = arch.lower()
    if _CONVNET.match(arch):
        return 1e-3
    return SOFT_REFERENCE_LR.get(arch)


def parse_students(text: str | None) -> tuple[str, ...] | None:
    """``"convnet3,convnet4-bn,resnet18-cifar"`` -> a tuple of distinct names (None for None)."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        raise FastDistillError(f"--students takes a comma-separated list of architectures, got {text!r}")
    return names
