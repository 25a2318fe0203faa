"""Train several ConvNet students at once as one :class:`~fastdistill.models.stacked_convnet.StackedConvNet`.

Each student keeps its own :class:`~fastdistill.eval.trainer.StudentTrainer`: its seed, its generator (so its
batches and augmentation are drawn exactly as when it trains alone), its protocol and its bookkeeping (epochs, steps,
losses, history). Only the forward/backward pass and the optimizer step are shared: one grouped-convolution network
over all students' batches, one optimizer over the stacked parameters (SGD and AdamW act element by element, so this
is each student's own optimizer). The result equals training the students one after another up to float rounding
(the grouped convolution sums in another order)::

    trainers = [StudentTrainer(info, proto, student="convnet3", seed=s) for s in range(6)]
    BatchedStudents(trainers).fit([(images, labels)] * 3 + subsets)   # one set per student, all the same size
    accs = [t.accuracy(test) for t in trainers]                        # trained weights are back in t.model
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from fastdistill.data.base import DatasetInfo, Split
from fastdistill.errors import FastDistillError
from fastdistill.eval.trainer import StudentTrainer, make_optimizer
from fastdistill.models import build_model
from fastdistill.models.convnet import ConvNet
from fastdistill.models.stacked_convnet import StackedConvNet


def stackable(arch: str, info: DatasetInfo) -> bool:
    """True when architecture ``arch`` builds a ConvNet (what :class:`StackedConvNet` stacks)."""
    return isinstance(build_model(arch, info.num_classes, info.channels, info.image_size), ConvNet)


def can_batch(trainers: Sequence[StudentTrainer]) -> bool:
    """True when the students are ConvNets of one shape under one protocol on one device."""
    if len(trainers) < 2 or not all(isinstance(t.model, ConvNet) for t in trainers):
        return False
    first = trainers[0]
    shape = [(n, p.shape) for n, p in first.model.state_dict().items()]
    return all(t.protocol == first.protocol and t.device == first.device and type(t) is type(first)
               and [(n, p.shape) for n, p in t.model.state_dict().items()] == shape for t in trainers)


class BatchedStudents:
    """``trainers`` (see :func:`can_batch`) trained together; fresh trainers only (no earlier ``fit``)."""

    def __init__(self, trainers: Sequence[StudentTrainer]):
        if not can_batch(trainers):
            raise FastDistillError("batched students must be 2+ ConvNets of one architecture under one protocol")
        if any(t.epochs_done for t in trainers):
            raise FastDistillError("batched students start from fresh trainers")
        self.trainers = list(trainers)

    def fit(self, sets: Sequence[tuple[torch.Tensor, torch.Tensor | None]], epochs: int | None = None, *,
            eval_on: Split | None = None, eval_every: int = 0, progress: bool = False, desc: str = "students"
            ) -> list[float]:
        """Train student k on ``sets[k]`` (images, labels) for ``epochs`` (default: the protocol's), all sets the
        same size; returns each student's last mean loss. Weights and BN statistics end up in each ``t.model``."""
        trainers = self.trainers
        if len(sets) != len(trainers):
            raise FastDistillError(f"{len(trainers)} students need {len(trainers)} sets, got {len(sets)}")
        first = trainers[0]
        epochs = first.protocol.epochs if epochs is None else epochs
        prepared = [t.prepare(images, labels, epochs) for t, (images, labels) in zip(trainers, sets, strict=True)]
        if len({x.shape[0] for x, _, _ in prepared}) != 1:
            raise FastDistillError("batched students need sets of the same size (one batch shape per step)")
        num_batches = prepared[0][2]
        stacked = StackedConvNet([t.model for t in trainers])
        optimizer = make_optimizer(first.protocol, list(stacked.parameters()))
        base_lr = first.protocol.lr
        losses = [float("nan")] * len(trainers)
        try:
            for epoch in tqdm(range(epochs), desc=desc, leave=False, disable=not progress, unit="ep"):
                first.set_lr(base_lr, epoch, epochs, optimizer)
                totals = torch.zeros(len(trainers), device=first.device)
                streams = [t.epoch_batches(x, y, num_batches) for t, (x, y, _) in zip(trainers, prepared, strict=True)]
                for drawn in zip(*streams, strict=True):
                    logits = stacked([xb for xb, _ in drawn])
                    per_student = torch.stack([t.criterion(lg, target)
                                               for t, lg, (_, target) in zip(trainers, logits, drawn, strict=True)])
                    optimizer.zero_grad(set_to_none=True)
                    per_student.sum().backward()
                    optimizer.step()
                    totals += per_student.detach()
                    for t in trainers:
                        t.steps += 1
                if eval_on is not None and first.protocol.evaluates(epoch + 1, epochs, eval_every):
                    stacked.unstack_into([t.model for t in trainers])  # end_epoch evaluates t.model
                for k, t in enumerate(trainers):
                    losses[k] = t.end_epoch(float(totals[k]) / num_batches, epoch, epochs, base_lr, eval_on,
                                            eval_every)
        finally:
            stacked.unstack_into([t.model for t in trainers])
        return losses
