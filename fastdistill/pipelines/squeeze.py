"""Squeeze: train a teacher classifier; each batch is drawn from the train split's uint8 images and converted on its
own, test accuracy is read batch by batch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from fastdistill.augment.translate import translate_flip
from fastdistill.data.base import Dataset, Split, to_float
from fastdistill.data.specs import dataset_presets, mirror_symmetric
from fastdistill.methods.realdata import batch_source, gather
from fastdistill.models import build_model
from fastdistill.models.accuracy import split_accuracy
from fastdistill.utils import distributed
from fastdistill.utils.distributed import World

DEFAULT_EPOCHS = 30  # for a dataset whose spec sets no teacher_epochs
# Translation by up to side / 8 pixels: 4 px at 32, the usual CIFAR RandomCrop(32, padding=4).
PAD_DIVISOR = 8
# OneCycleLR's share of warm-up steps (this package's choice; torch's default is 0.3).
WARMUP_FRACTION = 0.15


@dataclass
class SqueezeConfig:
    arch: str = "convnet3-bn"
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0

    def resolved_epochs(self, dataset: str) -> int:
        """``epochs``, else the dataset's preset, else :data:`DEFAULT_EPOCHS`."""
        if self.epochs is not None:
            return self.epochs
        preset = dataset_presets(dataset).teacher_epochs
        return DEFAULT_EPOCHS if preset is None else preset


def teacher_accuracy(model: nn.Module, split: Split, normalize, device: torch.device, batch_size: int = 1000) -> float:
    """Top-1 accuracy (%) of ``model`` on the uint8 images of ``split``, read batch by batch."""
    return split_accuracy(model, split, lambda u8: normalize(to_float(u8.to(device))), batch_size)


def train_teacher(
    ds: Dataset, cfg: SqueezeConfig, device: torch.device, progress: bool = True, ranks: World | None = None
) -> tuple[nn.Module, dict]:
    """Nesterov SGD (weight decay, one-cycle LR) with translation (+flip) augmentation; returns model and history.

    ``ranks`` (default: the torchrun job, one process without it): with several, the model is trained with
    ``DistributedDataParallel``. Every rank draws the same epoch permutation and the same augmentation of each global
    batch of ``batch_size`` images and forwards its share (every ``size``-th image, about batch_size / size), so the
    images, their augmentation and the averaged gradient are those of one process; what differs is that BatchNorm
    normalises each rank's share with its own batch statistics (no SyncBatchNorm: equal in distribution only) and the
    order of floating-point sums. The running statistics kept are rank 0's. A last global batch smaller than the
    number of ranks is skipped.
    """
    w = ranks or distributed.world()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    info = ds.info
    model = build_model(cfg.arch, info.num_classes, info.channels, info.image_size).to(device)
    net = model if w.size == 1 else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    epochs = cfg.resolved_epochs(info.name)
    n = len(ds.train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=WARMUP_FRACTION)
    images, labels = batch_source(ds.train.decoded().images, device), ds.train.labels.to(device)
    flip, pad = mirror_symmetric(info.name), max(1, info.image_size // PAD_DIVISOR)
    history = []
    bar = tqdm(range(epochs), desc=f"{w.tag}squeeze {cfg.arch}", disable=not progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=gen, device=device)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x = translate_flip(info.normalize(to_float(gather(images, idx, device))), flip, pad, gen)
            if w.size == 1:
                loss = F.cross_entropy(net(x), labels[idx])
            elif idx.numel() < w.size:
                continue
            else:  # this rank's share; DDP averages over ranks, so sum / global batch * ranks is the batch mean
                mine = slice(w.rank, None, w.size)
                loss = F.cross_entropy(net(x[mine]), labels[idx[mine]], reduction="sum") * w.size / idx.numel()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel() / w.size
        total = sum(distributed.gather(total)) if w.size > 1 else total
        history.append({"epoch": epoch + 1, "train_loss": total / n})
        bar.set_postfix(loss=f"{total / n:.3f}")
    if w.size > 1:  # rank 0's BatchNorm running statistics on every rank
        for mine, kept in zip(model.buffers(), distributed.broadcast([b.cpu() for b in model.buffers()]), strict=True):
            mine.copy_(kept)
    test_acc = teacher_accuracy(model, ds.test, info.normalize, device)
    model.eval().requires_grad_(False)
    return model, {"epochs": epochs, "test_accuracy": test_acc, "history": history}
