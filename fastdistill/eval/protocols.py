"""The two student-training protocols and their per-dataset defaults.

- ``hard``: the DC protocol (Zhao et al.; DC-Bench): cross-entropy on the stored labels, SGD lr 0.01, momentum 0.9,
  weight decay 5e-4, LR x0.1 for the second half of the epochs, batch 256, DSA augmentation (per-sample draws, one
  transform group per batch), 300 epochs.
- ``soft``: the RDED/DELT protocol: the teacher relabels every augmented batch and the student minimises
  KL(batchmean)(log_softmax(z_s/T) || softmax(z_t/T)), T = 20, no T² factor, no hard-label term; AdamW lr 1e-3,
  betas (0.9, 0.999), weight decay 0.01 on parameters with more than one dimension; LR ½(1 + cos(π e / 2E)) per
  epoch (half cosine, ends at ½ lr); RandomResizedCrop scale (0.25, 1) + flip, then CutMix (Beta(1, 1)); batch by
  DELT's IPC rule; 300 epochs.

Differences from the references (kept deliberately): DELT's RandAugment is not applied; flips are off for digit
datasets (digits, MNIST) in both protocols, as in DC; batches are balanced splits of a shuffled epoch (no batch of
one); DC's optimizer re-creation at the LR drop (which zeroes momentum) and its extra epoch are not reproduced.
Tiny datasets (``digits``) default to fewer epochs so a whole pipeline stays within minutes on a CPU: their specs'
``eval_epochs`` (:mod:`fastdistill.data.specs`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fastdistill.augment.dsa import dsa_strategy_for
from fastdistill.data.base import DatasetInfo
from fastdistill.data.specs import dataset_presets
from fastdistill.errors import FastDistillError

PROTOCOLS = ("hard", "soft")
DEFAULT_EPOCHS = 300


@dataclass(frozen=True)
class Protocol:
    """Everything that defines how a student is trained; stored with every result."""

    kind: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str
    schedule: str
    momentum: float = 0.0
    temperature: float = 0.0
    dsa_strategy: str = ""
    flip: bool = True
    rrc_scale: tuple[float, float] = (0.25, 1.0)
    cutmix: bool = False

    def to_dict(self) -> dict:
        """The fields that matter for this kind (hard: momentum, DSA; soft: temperature, RRC, flip, CutMix)."""
        skip = ("temperature", "rrc_scale", "flip", "cutmix") if self.kind == "hard" else ("momentum", "dsa_strategy")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


def default_epochs(kind: str, dataset: str) -> int:
    """300 (DC-Bench, DELT), or the dataset spec's ``eval_epochs`` (a reduced budget for tiny datasets)."""
    return dataset_presets(dataset).eval_epochs.get(kind, DEFAULT_EPOCHS)


# Dataset names of DELT's evaluation/argument.py batch rule (fastdistill spellings and the reference's).
TINY_IMAGENET_NAMES = ("tiny-imagenet", "tinyimagenet")
IMAGENET_1K_100_NAMES = ("imagenet-1k", "imagenet-100")


def soft_batch_size(ipc: int, num_classes: int, num_images: int, dataset: str = "", student: str = "") -> int:
    """DELT's rule (evaluation/argument.py; spec delt.md §7), in its order: base 10 for IPC 1, 50 for IPC 10/20,
    100 for IPC 30/40/50/100; x2 for exactly 100 or 1000 classes; halved for a ``resnet101`` student on
    ImageNet-1K/-100; 100 for Tiny-ImageNet whatever came before; at most the set size.

    DELT leaves other IPCs undefined (batch 0); here they take the nearest lower bracket (IPC < 10: 10, < 30: 50,
    else 100). Not reproduced: its one-off CIFAR-100 conv3-teacher/conv3-student batch of 25 (with lr 2e-3).
    """
    base = 10 if ipc < 10 else 50 if ipc < 30 else 100
    if num_classes in (100, 1000):
        base *= 2
    if dataset in IMAGENET_1K_100_NAMES and student == "resnet101":
        base //= 2
    if dataset in TINY_IMAGENET_NAMES:
        base = 100
    return max(1, min(base, num_images))


def make_protocol(kind: str, info: DatasetInfo, num_images: int, epochs: int | None = None, student: str = "",
                  **overrides: object) -> Protocol:
    """The protocol ``kind`` (``hard`` | ``soft``) with the defaults for ``info``, a set of ``num_images`` and the
    ``student`` architecture (the soft batch rule halves for ResNet-101).

    ``overrides`` replace any :class:`Protocol` field (e.g. ``lr=0.005``, ``batch_size=128``).
    """
    if kind not in PROTOCOLS:
        raise FastDistillError(f"unknown evaluation protocol {kind!r}; use one of {', '.join(PROTOCOLS)}")
    if epochs is not None and epochs <= 0:
        raise FastDistillError(f"epochs must be positive, got {epochs}")
    epochs = epochs or default_epochs(kind, info.name)
    flip = "flip" in dsa_strategy_for(info.name)
    if kind == "hard":
        proto = Protocol("hard", epochs, 256, 0.01, 5e-4, "sgd", "step", momentum=0.9,
                         dsa_strategy=dsa_strategy_for(info.name), flip=flip)
    else:
        ipc = max(1, round(num_images / info.num_classes))
        proto = Protocol("soft", epochs, soft_batch_size(ipc, info.num_classes, num_images, info.name, student),
                         1e-3, 0.01, "adamw", "half_cosine", temperature=20.0, flip=flip, cutmix=True)
    try:
        return dataclasses.replace(proto, **overrides)
    except TypeError as exc:
        raise FastDistillError(f"bad protocol override: {exc}") from exc


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Multiplier of the base LR in ``epoch`` (0-based) of a run of ``epochs``."""
    if schedule == "step":
        return 0.1 if epoch >= (epochs + 1) // 2 else 1.0
    if schedule == "half_cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / (2 * epochs)))
    if schedule == "constant":
        return 1.0
    raise FastDistillError(f"unknown LR schedule {schedule!r}; use step, half_cosine or constant")
