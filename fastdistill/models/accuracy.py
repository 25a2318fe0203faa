"""Top-1 accuracy: one evaluation loop for a classifier, a teacher, or a stack of networks run at once."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


@torch.no_grad()
def count_correct(logits_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
                  batch_size: int) -> torch.Tensor | int:
    """Correct top-1 predictions over ``images`` in batches: ``logits_of(batch)`` gives ``[..., B, classes]`` (a
    leading dim for stacked networks), the result is the int64 count ``[...]`` (0 for an empty set)."""
    correct: torch.Tensor | int = 0
    for start in range(0, images.shape[0], batch_size):
        logits = logits_of(images[start:start + batch_size])
        correct = correct + (logits.argmax(-1) == labels[start:start + batch_size].to(logits.device)).sum(-1)
    return correct


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             prepare: Callable[[torch.Tensor], torch.Tensor], batch_size: int) -> float:
    """Top-1 accuracy (%) of ``model`` on ``prepare(images)`` (batch by batch), in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    correct = count_correct(lambda batch: model(prepare(batch)), images, labels, batch_size)
    model.train(was_training)
    return 100.0 * int(correct) / max(1, images.shape[0])


@torch.no_grad()
def class_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   prepare: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                   num_classes: int) -> tuple[float, list[float | None]]:
    """Top-1 accuracy (%) of ``model`` overall and per class (None for a class absent from ``labels``), from one pass
    in eval mode (the mode is restored); the overall value equals :func:`accuracy`'s."""
    was_training = model.training
    model.eval()
    hits = torch.zeros(num_classes, dtype=torch.long)
    for start in range(0, images.shape[0], batch_size):
        predicted = model(prepare(images[start:start + batch_size])).argmax(-1)
        y = labels[start:start + batch_size].to(predicted.device)
        hits += torch.bincount(y[predicted == y], minlength=num_classes).cpu()
    model.train(was_training)
    totals = torch.bincount(labels.cpu(), minlength=num_classes)
    per_class = [100.0 * int(h) / int(t) if t else None for h, t in zip(hits, totals, strict=True)]
    return 100.0 * int(hits.sum()) / max(1, images.shape[0]), per_class
