"""Student training under a :class:`~fastdistill.eval.protocols.Protocol`, one-shot or progressive.

One-shot::

    trainer = StudentTrainer(info, make_protocol("hard", info, len(images)), seed=0, device="cuda")
    trainer.fit(images, labels)                  # protocol.epochs epochs
    top1 = trainer.accuracy(dataset.test)        # percent

Progressive (PDD's cumulative unions U_1 ⊂ U_2 ⊂ ...)::

    for union_images, union_labels in unions:
        trainer.fit(union_images, union_labels, epochs=500, lr=stage_lr)   # optimizer state carried over
    top1 = trainer.accuracy(dataset.test)

Each ``fit`` call runs the protocol's LR schedule over its own ``epochs`` (PDD+MTT: x0.1 at half of every stage)
while the optimizer state (momentum buffers, Adam moments and step count) continues; call :meth:`reset_optimizer`
between calls for a fresh optimizer per stage (PDD+IDC).

Images are uint8 [N, C, H, W] (or float pixels in [0, 1]); the student sees ``info.normalize(pixels)``. The whole set
stays on the device; batches are index slices of a per-epoch permutation (no DataLoader).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol as Interface

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fastdistill.augment.dsa import DSAConfig, dsa
from fastdistill.data.base import DatasetInfo, Split, to_float
from fastdistill.errors import FastDistillError
from fastdistill.eval.protocols import Protocol
from fastdistill.eval.recipebatches import recipe_epoch
from fastdistill.eval.softbatches import SoftBatch, draw_soft_epoch, label_batches
from fastdistill.methods.realdata import RealImages, batch_source
from fastdistill.models import build_model
from fastdistill.models.accuracy import accuracy, class_accuracy
from fastdistill.utils.seed import generator

EVAL_BATCH = 256  # CPU: cache-friendlier than larger batches for ConvNets; the same FLOPs on GPU


class StoredSoftLabels(Interface):
    """Stored soft-label batches of one student (``fastdistill.eval.relabel``)."""

    def epoch(self, index: int, n: int) -> list[SoftBatch]: ...


def model_inputs(info: DatasetInfo, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 or [0, 1] float pixels -> normalized float32 model inputs on ``device``."""
    pixels = images.to(device)
    pixels = to_float(pixels) if pixels.dtype == torch.uint8 else pixels.float()
    return info.normalize(pixels)


def make_optimizer(protocol: Protocol, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The protocol's optimizer over ``params``; AdamW decays only tensors of 2+ dimensions (not norms or biases)."""
    p = protocol
    if p.optimizer == "sgd":
        return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    if p.optimizer == "adamw":  # weight decay on weights only (not on norm scales or biases), as DELT/RDED
        decay = [q for q in params if q.dim() > 1]
        rest = [q for q in params if q.dim() <= 1]
        return torch.optim.AdamW([{"params": decay, "weight_decay": p.weight_decay},
                                  {"params": rest, "weight_decay": 0.0}], lr=p.lr, betas=(0.9, 0.999))
    raise FastDistillError(f"unknown optimizer {p.optimizer!r}; use sgd or adamw")


class StudentTrainer:
    """A freshly initialised student, its optimizer and its augmentation stream, all seeded by ``seed``.

    ``student`` is an architecture name for :func:`fastdistill.models.build_model` (initialised under
    ``torch.manual_seed(seed)`` without touching the global RNG) or a ready module. The soft protocol needs
    ``teacher``: a frozen classifier taking the same normalized inputs, or ``stored``: the batches, augmentation
    and teacher logits ``relabel`` stored (replayed exactly; no teacher runs).
    """

    def __init__(self, info: DatasetInfo, protocol: Protocol, *, student: str | nn.Module = "convnet3",
                 teacher: nn.Module | None = None, seed: int = 0, device: torch.device | str = "cpu",
                 stored: StoredSoftLabels | None = None):
        if protocol.kind == "soft" and teacher is None and stored is None:
            raise FastDistillError("the soft-label protocol needs a teacher (pass --teacher DIR, or evaluate 'hard')")
        self.info, self.protocol, self.teacher, self.stored = info, protocol, teacher, stored
        self.device = torch.device(device)
        if isinstance(student, str):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                student = build_model(student, info.num_classes, info.channels, info.image_size)
        self.model = student.to(self.device).train()
        self.generator = generator(seed, self.device)
        self.dsa_config = DSAConfig(strategy=protocol.dsa_strategy)
        self.optimizer = self._make_optimizer()
        self.epochs_done = 0
        self.steps = 0
        self.history: list[tuple[int, float]] = []
        self.losses: list[float] = []  # mean training loss of every epoch, across fit calls

    def _make_optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.protocol, [q for q in self.model.parameters() if q.requires_grad])

    def reset_optimizer(self) -> None:
        """Start the next ``fit`` with a fresh optimizer (no momentum, no Adam moments)."""
        self.optimizer = self._make_optimizer()

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float pixels -> normalized float32 model inputs on the trainer's device."""
        return model_inputs(self.info, images, self.device)

    def epoch_batches(self, x: torch.Tensor, y: torch.Tensor | None, batches: int
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch's augmented batches and targets on this student's generator: labels (hard), teacher logits
        (soft, live or stored)."""
        p, g = self.protocol, self.generator
        if p.pixel_pipeline:  # named protocols with pixel-space augmentation (delt, rded, minimax)
            yield from recipe_epoch(x, y, batches, p, self.info, g, self.teacher)
            return
        if p.kind == "hard":
            for idx in torch.tensor_split(torch.randperm(x.shape[0], generator=g, device=self.device), batches):
                yield (dsa(x[idx], g, self.dsa_config) if p.dsa_strategy else x[idx]), y[idx]
            return
        if self.stored is not None:
            drawn = self.stored.epoch(self.epochs_done, x.shape[0])
        else:
            drawn = draw_soft_epoch(x.shape[0], x.shape[-2:], p, g)
        for xb, batch in label_batches(x, drawn, self.teacher):
            yield xb, batch.logits.to(self.device)

    def _loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(self.model(x), target)

    def criterion(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The protocol's loss: cross-entropy on labels (hard) or KL to the teacher's tempered softmax (soft)."""
        if self.protocol.kind == "hard":
            return F.cross_entropy(logits, target)
        t = self.protocol.temperature
        return F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(target.float() / t, dim=1), reduction="batchmean")

    def fit(self, images: torch.Tensor, labels: torch.Tensor | None = None, epochs: int | None = None, *,
            lr: float | None = None, eval_on: Split | None = None, eval_every: int = 0, progress: bool = False,
            desc: str = "student", stream: bool = False) -> float:
        """Train ``epochs`` epochs (default: the protocol's) on ``images``; returns the last epoch's mean loss.

        ``labels`` are required by the hard protocol (the soft one relabels with the teacher). ``lr`` replaces the
        protocol's base LR for this call. With ``eval_on`` and ``eval_every`` > 0, test accuracy is recorded in
        :attr:`history` every ``eval_every`` epochs and after the last one (not before the protocol's ``eval_from``).
        ``stream``: keep ``images`` as they are (uint8, in memory or a memory map) and convert each batch when it is
        drawn, instead of the whole set up front (a full train split; the same values either way).
        """
        epochs = self.protocol.epochs if epochs is None else epochs
        x, y, num_batches = self.prepare(images, labels, epochs, stream)
        base_lr = self.protocol.lr if lr is None else lr
        mean_loss = float("nan")
        for epoch in tqdm(range(epochs), desc=desc, leave=False, disable=not progress, unit="ep"):
            self.set_lr(base_lr, epoch, epochs)
            total = torch.zeros((), device=self.device)
            for xb, target in self.epoch_batches(x, y, num_batches):
                loss = self._loss(xb, target)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += loss.detach()
                self.steps += 1
            mean_loss = self.end_epoch(float(total) / num_batches, epoch, epochs, base_lr, eval_on, eval_every)
        return mean_loss

    def prepare(self, images: torch.Tensor, labels: torch.Tensor | None, epochs: int, stream: bool = False
                ) -> tuple[torch.Tensor | RealImages, torch.Tensor | None, int]:
        """Checked model inputs (converted lazily with ``stream``), targets (hard) and batches per epoch of one
        ``fit`` call."""
        if epochs <= 0:
            raise FastDistillError(f"epochs must be positive, got {epochs}")
        if stream:
            x = RealImages(batch_source(images, self.device), torch.arange(images.shape[0]), self.info, self.device)
        else:
            x = self.inputs(images)
        n = x.shape[0]
        if n == 0:
            raise FastDistillError("cannot train a student on an empty set")
        if self.protocol.kind != "hard":
            return x, None, math.ceil(n / min(self.protocol.batch_size, n))
        if labels is None or labels.shape != (n,):
            raise FastDistillError("the hard-label protocol needs one integer label per image")
        return x, labels.to(self.device).long(), math.ceil(n / min(self.protocol.batch_size, n))

    def set_lr(self, base_lr: float, epoch: int, epochs: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Apply the protocol's schedule for ``epoch`` of ``epochs`` (to ``optimizer``, default this student's)."""
        for group in (optimizer or self.optimizer).param_groups:
            group["lr"] = base_lr * self.protocol.lr_factor(epoch, epochs)

    def end_epoch(self, mean_loss: float, epoch: int, epochs: int, base_lr: float, eval_on: Split | None,
                  eval_every: int) -> float:
        """Book one finished epoch: count it, keep its mean loss, stop on a non-finite loss, evaluate if due."""
        self.epochs_done += 1
        self.losses.append(mean_loss)
        if not math.isfinite(mean_loss):
            raise FastDistillError(f"student loss became {mean_loss} in epoch {epoch + 1} of {epochs} "
                                   f"({self.protocol.kind} protocol, lr {base_lr}); lower the learning rate")
        if eval_on is not None and self.protocol.evaluates(epoch + 1, epochs, eval_every):
            self.history.append((self.epochs_done, self.accuracy(eval_on)))
        return mean_loss

    @torch.no_grad()
    def accuracy(self, data: Split | torch.Tensor, labels: torch.Tensor | None = None,
                 batch_size: int = EVAL_BATCH) -> float:
        """Top-1 accuracy in percent on a :class:`Split` or on (``images``, ``labels``), in batches, eval mode."""
        images, labels = (data.images, data.labels) if isinstance(data, Split) else (data, labels)
        if labels is None or labels.shape[0] != images.shape[0] or images.shape[0] == 0:
            raise FastDistillError("accuracy needs a non-empty set of images with one label each")
        return accuracy(self.model, images, labels, self.inputs, batch_size)

    def class_accuracy(self, data: Split, batch_size: int = EVAL_BATCH) -> tuple[float, list[float | None]]:
        """Top-1 accuracy in percent on ``data``, overall and per class (None for a class ``data`` lacks)."""
        if data.images.shape[0] == 0:
            raise FastDistillError("accuracy needs a non-empty set of images with one label each")
        return class_accuracy(self.model, data.images, data.labels, self.inputs, batch_size, self.info.num_classes)
