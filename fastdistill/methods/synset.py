"""The synthetic set of one stage: the frozen union of earlier stages plus the subset being learned.

Frozen images are a plain tensor that no optimizer ever sees, so later stages cannot change them (not even through
momentum or weight decay); only ``new`` is a leaf with gradients. Images live in the model's normalized space and are
clamped to the normalized image of [0, 1] pixels after every step, so what is optimised is what gets saved.
"""

from __future__ import annotations

import torch

from fastdistill.data.base import DatasetInfo
from fastdistill.utils import distributed


class StageImages:
    """``frozen [C, k_old, ...]`` (U_{i-1}) and ``new [C, k_new, ...]`` (S_i), class-major, with S_i's optimizer."""

    def __init__(self, frozen: torch.Tensor, new: torch.Tensor, info: DatasetInfo, lr: float, momentum: float):
        self.frozen = frozen.detach()
        self.new = new.detach().clone().requires_grad_(True)
        lo, hi = info.bounds(new.device)
        self.lo, self.hi = lo.view(1, 1, -1, 1, 1), hi.view(1, 1, -1, 1, 1)
        self.optimizer = torch.optim.SGD([self.new], lr=lr, momentum=momentum)

    @property
    def num_classes(self) -> int:
        return self.new.shape[0]

    @property
    def per_class(self) -> int:
        return self.frozen.shape[1] + self.new.shape[1]

    def union(self) -> torch.Tensor:
        """U_{i-1} ∪ S_i as [C, k, ...] (differentiable in ``new`` only)."""
        return torch.cat([self.frozen, self.new], 1) if self.frozen.shape[1] else self.new

    def flat_union(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The union as ``(x [C*k, ...], y [C*k])``."""
        return self.union().flatten(0, 1), self.labels()

    def labels(self) -> torch.Tensor:
        return torch.arange(self.num_classes, device=self.new.device).repeat_interleave(self.per_class)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def sum_grads(self) -> None:
        """Sum ``new``'s gradient over the torchrun ranks (each computed its classes' share; no-op in one process)."""
        if distributed.world().size == 1:
            return
        if self.new.grad is None:  # a rank without classes
            self.new.grad = torch.zeros_like(self.new)
        distributed.sum_shares_(self.new.grad)

    def step(self) -> None:
        """One optimizer step on S_i, then clamp it to valid pixels."""
        self.optimizer.step()
        with torch.no_grad():
            self.new.copy_(torch.maximum(torch.minimum(self.new, self.hi), self.lo))
