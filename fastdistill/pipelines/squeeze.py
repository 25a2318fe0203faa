"""Squeeze: train a teacher classifier on a dataset held in memory."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fastdistill.data.base import Dataset, Split, to_float
from fastdistill.data.specs import dataset_presets, mirror_symmetric
from fastdistill.models import build_model

DEFAULT_EPOCHS = 30  # for a dataset whose spec sets no teacher_epochs


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


def augment_batch(x: torch.Tensor, flip: bool, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (zero padding) and, if ``flip``, random horizontal flips."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]
    out = padded.gather(2, rows.expand(n, x.shape[1], h, padded.shape[3])).gather(3, cols.expand(n, x.shape[1], h, w))
    if flip:
        mask = torch.rand(n, generator=generator, device=x.device) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, normalize, device: torch.device, batch_size: int = 1000) -> float:
    """Top-1 accuracy (%) of ``model`` on ``split``."""
    model.eval()
    correct = 0
    for i in range(0, len(split), batch_size):
        x = normalize(to_float(split.images[i:i + batch_size].to(device)))
        correct += int((model(x).argmax(1) == split.labels[i:i + batch_size].to(device)).sum())
    return 100.0 * correct / max(1, len(split))


def train_teacher(
    ds: Dataset, cfg: SqueezeConfig, device: torch.device, progress: bool = True
) -> tuple[nn.Module, dict]:
    """SGD (momentum, weight decay, cosine LR) with translation (+flip) augmentation; returns model and history."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    info = ds.info
    model = build_model(cfg.arch, info.num_classes, info.channels, info.image_size).to(device)
    epochs = cfg.resolved_epochs(info.name)
    n = len(ds.train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    images, labels = ds.train.images.to(device), ds.train.labels.to(device)
    flip, pad = mirror_symmetric(info.name), max(1, info.image_size // 8)
    history = []
    bar = tqdm(range(epochs), desc=f"squeeze {cfg.arch}", disable=not progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=gen, device=device)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x = augment_batch(info.normalize(to_float(images[idx])), flip, pad, gen)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel()
        history.append({"epoch": epoch + 1, "train_loss": total / n})
        bar.set_postfix(loss=f"{total / n:.3f}")
    test_acc = accuracy(model, ds.test, info.normalize, device)
    model.eval().requires_grad_(False)
    return model, {"epochs": epochs, "test_accuracy": test_acc, "history": history}
