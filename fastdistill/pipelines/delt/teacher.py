"""The teacher of a DELT run: a given one, or one trained with the squeeze defaults into the run folder."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fastdistill.data.base import Dataset, Split
from fastdistill.errors import FastDistillError
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.models.teacher import load_teacher, save_teacher
from fastdistill.pipelines.squeeze import SqueezeConfig, teacher_accuracy, train_teacher
from fastdistill.utils import distributed

SANITY_IMAGES = 500  # test images a loaded teacher is checked on
SANITY_FACTOR = 2.0  # a teacher must beat chance (100 / classes %) by this factor: else its class order is wrong


def obtain_teacher(ds: Dataset, teacher_path: str | None, run_dir: Path, cfg: DELTConfig,
                   device: torch.device) -> tuple[nn.Module, str]:
    """Load ``teacher_path``; without one, reuse or train ``run_dir/teacher`` with the squeeze defaults.

    Under torchrun rank 0 alone trains the teacher (exactly as one process would) while the others wait, then every
    rank loads and checks it.
    """
    if teacher_path is None:
        teacher_path = str(run_dir / "teacher")

        def train() -> None:
            if distributed.is_main() and not (run_dir / "teacher" / "teacher.json").exists():
                print(f"no --teacher given: training a {cfg.teacher_arch} teacher on {ds.info.name} into "
                      f"{teacher_path}")
                model, result = train_teacher(ds, SqueezeConfig(arch=cfg.teacher_arch, seed=cfg.seed), device,
                                              ranks=distributed.World())  # alone
                save_teacher(teacher_path, model, cfg.teacher_arch, ds.info, test_accuracy=result["test_accuracy"],
                             epochs=result["epochs"], seed=cfg.seed)

        distributed.agree(train)
    return distributed.agree(lambda: check_teacher(ds, teacher_path, device)[0]), teacher_path


def check_teacher(ds: Dataset, teacher_path: str, device: torch.device, weights: str | None = None,
                  fmt: str | None = None) -> tuple[nn.Module, dict]:
    """Load the teacher at ``teacher_path`` (``weights``, ``fmt``: see ``load_teacher``) and check DELT can use it on
    ``ds`` (BatchNorm layers, accuracy); returns it and its metadata."""
    teacher, meta = load_teacher(teacher_path, ds.info, device, weights, fmt)
    if not any(isinstance(m, nn.BatchNorm2d) for m in teacher.modules()):
        raise FastDistillError("the teacher has no BatchNorm2d layers, and DELT matches BN statistics; "
                               "use a batch-norm architecture such as convnet3-bn or resnet18-cifar")
    first = torch.arange(min(SANITY_IMAGES, len(ds.test)))
    images = ds.test.take(first)
    labels = ds.test.labels[first]  # after take: an unreadable file skipped there is labelled SKIPPED
    sample = Split(images[labels >= 0], labels[labels >= 0])
    acc = teacher_accuracy(teacher, sample, ds.info.normalize, device)
    if acc < SANITY_FACTOR * 100.0 / ds.info.num_classes:
        raise FastDistillError(f"the teacher reaches only {acc:.1f}% on {len(sample)} test images of {ds.info.name}; "
                               "its class order probably does not match the data (or it is untrained)")
    return teacher, meta
