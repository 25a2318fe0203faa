"""The element-wise part of one guided reverse step: CFG combination, x0 prediction, posterior mean, learned-range
sigma, mode guidance and ancestral noise, for a whole batch of rows at once (fp32).

Sign convention (official code / Algorithm 1, not the paper's Eq. 6): the guidance term
``lambda_i * sigma_t * (m - x0_hat)`` is *added to the posterior mean*, pulling samples toward their mode ``m``.
The DDIM form is ``eps_hat = eps - sqrt(1 - ab_t) * lambda_i * (m - x0_hat)``.
"""

from __future__ import annotations

import torch

from fastdistill.pipelines.mgd.schedule import StepCoefs


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float, channels: int | None) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)`` on the first ``channels`` channels (all if None); the rest from ``cond``.

    ``channels=3`` on 4-channel latents is DiT's ``forward_with_cfg`` (the setting of MGD3's reference runs).
    """
    if channels is None or channels >= cond.shape[1]:
        return uncond + scale * (cond - uncond)
    out = cond.clone()
    out[:, :channels] = uncond[:, :channels] + scale * (cond[:, :channels] - uncond[:, :channels])
    return out


def ddpm_step(x: torch.Tensor, eps: torch.Tensor, var_channels: torch.Tensor | None, c: StepCoefs,
              mode: torch.Tensor | None, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDPM step; returns ``(x_prev, x0_hat)``. Same arithmetic, in the same order, as ``DDPMScheduler.step``,
    plus the guidance term when ``c.guidance != 0``. ``var_channels`` is the learned-range output (None = fixed)."""
    x0 = (x - c.sqrt_beta_prod * eps) / c.sqrt_alpha_prod
    mean = c.coef_x0 * x0 + c.coef_xt * x
    if var_channels is not None:
        frac = (var_channels + 1) / 2
        std = torch.exp(0.5 * (frac * c.max_log + (1 - frac) * c.min_log))
    else:
        std = c.fixed_std
    if c.guidance != 0 and mode is not None:
        mean = mean + c.guidance * std * (mode - x0)
    if c.t > 0 and noise is not None:
        mean = mean + std * noise
    return mean, x0


def ddim_step(x: torch.Tensor, eps: torch.Tensor, c: StepCoefs,
              mode: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (eta = 0) with guidance in epsilon space; returns ``(x_prev, x0_hat)``."""
    x0 = (x - c.sqrt_beta_prod * eps) / c.sqrt_alpha_prod
    if c.guidance != 0 and mode is not None:
        eps = eps - c.sqrt_beta_prod * c.guidance * (mode - x0)
        x0_guided = (x - c.sqrt_beta_prod * eps) / c.sqrt_alpha_prod
    else:
        x0_guided = x0
    return c.coef_x0 * x0_guided + c.coef_xt * eps, x0
