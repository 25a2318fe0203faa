"""BN-statistic matching loss with per-group statistics and a closed-form backward.

For x in [N, C, H, W] split into ``groups`` equal contiguous chunks of the batch, group g's loss is

    ||mean_g - running_mean||_2 + ||var_g - running_var||_2,

mean_g / var_g (biased) per channel over the group's (N / groups, H, W). With M = N / groups * H * W, the input
gradient is a per-(group, channel) affine map of x:

    dL/dx = grad_g * (coef_mu + coef_var * (x - mean_g)),
    coef_mu = d_mu / (M ||d_mu||),  coef_var = 2 d_var / (M ||d_var||),  d_mu = mean_g - running_mean, d_var likewise,

so the backward reads x once and writes the gradient once (a zero norm gives a zero coefficient, never NaN).

Backends: Triton (``bn_stat_loss_triton``; CUDA, or CPU tensors under ``TRITON_INTERPRET=1`` when forced) and torch
(``bn_stat_loss_torch``; the CPU default). This module holds the public function, its autograd and the input checks.
The launchers are shared with ``stat_batchnorm`` (BatchNorm2d that returns this loss), which fuses the normalised output
into the statistics pass and BN's input gradient into the backward pass.
"""

from __future__ import annotations

import torch

from fastdistill.errors import FastDistillError
from fastdistill.ops.bn_stat_loss_torch import torch_bn_stat_loss_backward, torch_bn_stat_loss_forward
from fastdistill.ops.bn_stat_loss_triton import bn_stat_loss_backward, bn_stat_loss_forward
from fastdistill.ops.registry import backend_for

_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_IMPLS = {
    "triton": (bn_stat_loss_forward, bn_stat_loss_backward),
    "torch": (torch_bn_stat_loss_forward, torch_bn_stat_loss_backward),
}


def check_bn_input(x: torch.Tensor, groups: int, op: str) -> int:
    """Validate x's shape, dtype and groups from its metadata only; return its number of channels."""
    if x.dim() != 4:
        raise FastDistillError(f"{op}: x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype not in _FLOAT_DTYPES:
        raise FastDistillError(f"{op}: x must be float32, bfloat16 or float16, got {x.dtype}")
    n, c, h, w = x.shape
    if groups < 1 or n == 0 or n % groups:
        raise FastDistillError(f"{op}: the batch of {n} cannot be split into {groups} equal non-empty groups")
    if c * h * w == 0:
        raise FastDistillError(f"{op}: x has no elements (shape {tuple(x.shape)})")
    return c


def fp32_statistic(t: torch.Tensor, channels: int, device: torch.device, name: str, op: str) -> torch.Tensor:
    """``t`` checked to be [channels] on ``device``, as fp32 contiguous (itself when it already is)."""
    if t.shape != (channels,):
        raise FastDistillError(f"{op}: {name} must have shape ({channels},) for x with {channels} channels, got "
                               f"{tuple(t.shape)}")
    if t.device != device:
        raise FastDistillError(f"{op}: {name} is on {t.device} but x is on {device}")
    return t if t.dtype == torch.float32 and t.is_contiguous() else t.float().contiguous()


class BNStatLossFunction(torch.autograd.Function):
    """Autograd for ``bn_stat_loss``: forward saves x and per-(group, channel) coefficients for the affine backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int,
                backend: str) -> torch.Tensor:
        loss, stats, _ = _IMPLS[backend][0](x, running_mean, running_var, groups)
        ctx.save_for_backward(x, stats)
        ctx.backend = backend
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        x, stats = ctx.saved_tensors
        return _IMPLS[ctx.backend][1](x, grad_loss, stats), None, None, None, None


def bn_stat_loss(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int = 1,
                 backend: str | None = None) -> torch.Tensor:
    """Per-group BN-statistic matching loss -> fp32 Tensor[groups]; differentiable in ``x``.

    x: [N, C, H, W], NCHW-contiguous or channels_last, fp32/bf16/fp16 (statistics accumulate in fp32); the batch is
    split into ``groups`` equal contiguous chunks (rows g*N/groups ... (g+1)*N/groups - 1 form group g).
    running_mean / running_var: [C]. ``backend``: "triton", "torch", or None for the automatic choice
    (Triton on CUDA, torch on CPU; ``FASTDISTILL_BACKEND`` overrides).
    """
    c = check_bn_input(x, groups, "bn_stat_loss")
    running_mean = fp32_statistic(running_mean, c, x.device, "running_mean", "bn_stat_loss")
    running_var = fp32_statistic(running_var, c, x.device, "running_var", "bn_stat_loss")
    backend = backend_for("bn_stat_loss", x.device, backend)
    return BNStatLossFunction.apply(x, running_mean, running_var, groups, backend)
