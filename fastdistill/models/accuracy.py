"""Top-1 accuracy: one evaluation loop for a classifier, a teacher, or a stack of networks run at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from fastdistill.data.base import Split

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def tensor_batches(images: torch.Tensor, labels: torch.Tensor,
                   batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` slices of ``batch_size``, in order."""
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def split_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(uint8 images, labels)`` of ``split`` read batch by batch (``split.batches``: a streamed split is never held
    whole)."""
    for _, images, labels in split.batches(batch_size):
        yield images, labels


@torch.no_grad()
def count_correct(logits_of: Callable[[torch.Tensor], torch.Tensor],
                  batches: Batches) -> tuple[torch.Tensor | int, int]:
    """Correct top-1 predictions over ``batches`` of ``(images, labels)``: ``logits_of(images)`` gives
    ``[..., B, classes]`` (a leading dim for stacked networks). Returns the int64 count ``[...]`` (0 for no batch)
    and the number of images."""
    correct: torch.Tensor | int = 0
    total = 0
    for images, labels in batches:
        logits = logits_of(images)
        correct = correct + (logits.argmax(-1) == labels.to(logits.device)).sum(-1)
        total += labels.shape[0]
    return correct, total


def batches_accuracy(model: nn.Module, batches: Batches, prepare: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Top-1 accuracy (%) of ``model`` on ``prepare(images)`` of each batch, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    correct, total = count_correct(lambda batch: model(prepare(batch)), batches)
    model.train(was_training)
    return 100.0 * int(correct) / max(1, total)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             prepare: Callable[[torch.Tensor], torch.Tensor], batch_size: int) -> float:
    """Top-1 accuracy (%) of ``model`` on ``prepare(images)`` (batch by batch), in eval mode (the mode is restored)."""
    return batches_accuracy(model, tensor_batches(images, labels, batch_size), prepare)


def split_accuracy(model: nn.Module, split: Split, prepare: Callable[[torch.Tensor], torch.Tensor],
                   batch_size: int) -> float:
    """Top-1 accuracy (%) of ``model`` on ``prepare(uint8 images)`` of ``split``, streamed batch by batch."""
    return batches_accuracy(model, split_batches(split, batch_size), prepare)


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
