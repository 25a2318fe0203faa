"""Torch backend of ``bn_stat_loss`` (the CPU default): sums and sums of squares by vectorised fp32 reductions, no
permuted copy, no temporary; the backward is one fused multiply-add per element."""

from __future__ import annotations

import torch


def _coefficients(mean: torch.Tensor, var: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                  count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss [G], coef_mu [G, C], coef_var [G, C]) from per-group statistics (zero norm -> zero coefficient)."""
    d_mu, d_var = mean - running_mean, var - running_var
    norm_mu = torch.linalg.vector_norm(d_mu, dim=1, keepdim=True)
    norm_var = torch.linalg.vector_norm(d_var, dim=1, keepdim=True)
    coef_mu = d_mu * torch.where(norm_mu > 0, 1.0 / (count * norm_mu), 0.0)
    coef_var = d_var * torch.where(norm_var > 0, 2.0 / (count * norm_var), 0.0)
    return (norm_mu + norm_var).squeeze(1), coef_mu, coef_var


def _row_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (image, channel) sum and sum of squares over H x W as float64 [N, C]: two vectorised fp32 reductions along
    the contiguous axis (no temporary, no permuted copy), combined across images in float64."""
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        rows, dim = x.permute(0, 2, 3, 1).view(n, h * w, c), 1
    else:
        rows, dim = x.contiguous().view(n, c, h * w), 2
    sums = rows.sum(dim, dtype=torch.float32)
    squares = torch.linalg.vector_norm(rows, dim=dim, dtype=torch.float32).double().square()
    return sums.double(), squares


def torch_bn_stat_loss_forward(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int):
    """Torch implementation of ``bn_stat_loss_forward`` without the BN output: (loss, stats [3, G, C], None).

    var = E[x^2] - mean^2 from fp32 sums: relative error about 1e-7 * (1 + mean^2 / var) (the Triton kernel
    accumulates x - running_mean instead, which removes most of the cancellation).
    """
    n, c, h, w = x.shape
    count = n // groups * h * w
    sums, squares = (t.view(groups, n // groups, c).sum(1) for t in _row_moments(x))
    mean = sums / count
    var = (squares / count - mean.square()).clamp_min(0)
    mean = mean.float()
    loss, coef_mu, coef_var = _coefficients(mean, var.float(), running_mean, running_var, count)
    return loss, torch.stack((mean, coef_mu, coef_var)), None


def torch_bn_stat_loss_backward(x: torch.Tensor, grad_loss: torch.Tensor, stats: torch.Tensor,
                                dy: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Torch implementation of ``bn_stat_loss_backward``: one fused multiply-add per element (plus dy's term)."""
    n, c, h, w = x.shape
    groups = grad_loss.shape[0]
    mean, coef_mu, coef_var = stats.view(3, groups, c)
    grad = grad_loss.float().view(groups, 1)
    slope = (coef_var * grad).view(groups, 1, c, 1, 1)
    intercept = ((coef_mu - coef_var * mean) * grad).view(groups, 1, c, 1, 1)
    xf = x if x.dtype == torch.float32 else x.float()
    dx = torch.addcmul(intercept, xf.view(groups, n // groups, c, h, w), slope).view(n, c, h, w)
    if dy is not None:
        dx.addcmul_(dy, scale.view(1, c, 1, 1))
    return dx.to(x.dtype)
