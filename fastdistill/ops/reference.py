"""Reference (DELT/SRe2L-style) implementations: the test oracles and the benchmarks' baselines.

They reproduce what the reference recover loop computes, the way it computes it:
- the BN-statistic loss is a forward hook on every ``nn.BatchNorm2d`` that takes the layer's *input*, makes a
  channel-major copy (permute + contiguous + reshape), computes mean and biased variance, and two L2 norms; its gradient
  comes from autograd;
- the image update is one ``torch.optim.Adam`` over the whole batch (rows enter the forward pass by indexing the batch
  with a Python list of active rows) followed by one clamp per channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def reference_bn_loss(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor) -> torch.Tensor:
    """||mean - running_mean||_2 + ||var - running_var||_2 over x's channels (scalar), computed as the hook does."""
    channels = x.shape[1]
    mean = x.mean([0, 2, 3])
    var = x.permute(1, 0, 2, 3).contiguous().reshape(channels, -1).var(1, unbiased=False)
    return torch.norm(running_var - var, 2) + torch.norm(running_mean - mean, 2)


def reference_bn_stat_loss(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                           groups: int = 1) -> torch.Tensor:
    """Per-group ``reference_bn_loss`` over ``groups`` equal contiguous chunks of the batch -> Tensor[groups]."""
    return torch.stack([reference_bn_loss(chunk, running_mean, running_var) for chunk in x.chunk(groups)])


class BNFeatureHook:
    """Forward hook on one BatchNorm2d: after each forward, ``r_feature`` is the statistic loss of the layer's input."""

    def __init__(self, module: nn.BatchNorm2d):
        self.r_feature: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self.r_feature = reference_bn_loss(inputs[0], module.running_mean, module.running_var)

    def close(self) -> None:
        self._handle.remove()


def attach_bn_hooks(model: nn.Module) -> list[BNFeatureHook]:
    """One ``BNFeatureHook`` per BatchNorm2d of ``model``, in ``model.modules()`` order."""
    return [BNFeatureHook(m) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def hooks_loss(hooks: Sequence[BNFeatureHook], first_multiplier: float = 10.0) -> torch.Tensor:
    """sum_l w_l * r_l with w_1 = ``first_multiplier`` and w_l = 1 otherwise (the last forward's statistics)."""
    return sum(h.r_feature * (first_multiplier if i == 0 else 1.0) for i, h in enumerate(hooks))


def active_rows(inputs: torch.Tensor, slicing: list[int]) -> torch.Tensor:
    """The reference's per-round slicing: index the full batch with a Python list (a host-to-device copy each call)."""
    return inputs[slicing]


def reference_image_update(inputs: torch.Tensor, optimizer: torch.optim.Optimizer, lo: Sequence[float],
                           hi: Sequence[float]) -> None:
    """One step of the shared Adam over the whole batch, then one clamp per channel c to [lo[c], hi[c]]."""
    optimizer.step()
    with torch.no_grad():
        for c, (low, high) in enumerate(zip(lo, hi, strict=True)):
            inputs[:, c] = torch.clamp(inputs[:, c], low, high)
