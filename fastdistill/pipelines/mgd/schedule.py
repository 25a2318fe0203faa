"""Per-step coefficients of the guided sampler, taken from diffusers' schedulers so the timesteps and alphas match.

Stop-guidance units (spec §3): with ``T`` sampling steps the respaced index runs ``i = T-1 … 0``; guidance is on while
``i > stop_t``. ``--stop-guidance`` is the fraction ``stop_t / T`` (0.5 with 50 steps = the paper's ``t_stop = 25``,
24 guided steps, t = 999 … 530); the number of guided steps is ``max(0, T - 1 - stop_t)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdistill.errors import FastDistillError
from fastdistill.pipelines.mgd._deps import require_diffusers

SAMPLERS = ("ddpm", "ddim")


@dataclass(frozen=True)
class StepCoefs:
    """Scalars of one reverse step at timestep ``t`` (0-d fp32 tensors, computed exactly as diffusers does).

    DDPM: ``x0 = (x - sqrt_beta_prod*eps) / sqrt_alpha_prod``; mean ``= coef_x0*x0 + coef_xt*x``; log-variance
    interpolated between ``min_log`` (posterior) and ``max_log`` (beta) by the learned channel, else std ``fixed_std``.
    DDIM (eta = 0): ``x_prev = coef_x0*x0 + coef_xt*eps`` with ``coef_x0 = sqrt(ab_prev)`` and
    ``coef_xt = sqrt(1-ab_prev)``.
    """

    t: int
    sqrt_beta_prod: torch.Tensor
    sqrt_alpha_prod: torch.Tensor
    coef_x0: torch.Tensor
    coef_xt: torch.Tensor
    min_log: torch.Tensor
    max_log: torch.Tensor
    fixed_std: torch.Tensor
    guidance: float  # lambda_i = lambda * [i > stop_t]


@dataclass(frozen=True)
class StepTables:
    sampler: str
    variance: str  # "learned_range" or "fixed_small" (DDPM); unused by DDIM
    steps: list[StepCoefs]

    @property
    def timesteps(self) -> list[int]:
        return [s.t for s in self.steps]

    @property
    def guided_steps(self) -> int:
        return sum(s.guidance != 0 for s in self.steps)


def stop_index(steps: int, stop_guidance: float) -> int:
    """Respaced stop index ``stop_t`` for a stop fraction in [0, 1]."""
    if not 0.0 <= stop_guidance <= 1.0:
        raise FastDistillError(f"--stop-guidance is a fraction of the sampling steps in [0, 1], got {stop_guidance}")
    return round(stop_guidance * steps)


def guided_step_count(steps: int, stop_t: int) -> int:
    """Guided steps for ``T = steps`` and respaced stop index ``stop_t`` (official code: ``i > stop_t``)."""
    return max(0, steps - 1 - stop_t)


def guidance_weights(steps: int, scale: float, stop_t: int) -> list[float]:
    """lambda_i in loop order (``i = T-1 … 0``): ``scale`` while ``i > stop_t``, else 0."""
    return [scale if (steps - 1 - j) > stop_t else 0.0 for j in range(steps)]


def _ddpm_tables(config: dict, steps: int, learned_sigma: bool, weights: list[float]) -> StepTables:
    diffusers = require_diffusers()
    variance = "learned_range" if learned_sigma else "fixed_small"
    sched = diffusers.DDPMScheduler.from_config(config, variance_type=variance, clip_sample=False,
                                                timestep_spacing="linspace", prediction_type="epsilon",
                                                thresholding=False)
    sched.set_timesteps(steps)
    ac, one = sched.alphas_cumprod, sched.one
    out = []
    for j, t in enumerate(sched.timesteps.tolist()):
        prev = int(sched.previous_timestep(t))
        a_t = ac[t]
        a_p = ac[prev] if prev >= 0 else one
        beta_prod_t, beta_prod_prev = 1 - a_t, 1 - a_p
        cur_alpha = a_t / a_p
        cur_beta = 1 - cur_alpha
        var = torch.clamp((1 - a_p) / (1 - a_t) * cur_beta, min=1e-20)
        out.append(StepCoefs(t, beta_prod_t ** 0.5, a_t ** 0.5, (a_p ** 0.5 * cur_beta) / beta_prod_t,
                             cur_alpha ** 0.5 * beta_prod_prev / beta_prod_t, torch.log(var), torch.log(cur_beta),
                             var ** 0.5, weights[j]))
    return StepTables("ddpm", variance, out)


def _ddim_tables(config: dict, steps: int, weights: list[float]) -> StepTables:
    diffusers = require_diffusers()
    sched = diffusers.DDIMScheduler.from_config(config, timestep_spacing="leading", steps_offset=0,
                                                set_alpha_to_one=True, clip_sample=False, prediction_type="epsilon",
                                                thresholding=False)
    sched.set_timesteps(steps)
    ac = sched.alphas_cumprod
    stride = sched.config.num_train_timesteps // steps
    out = []
    for j, t in enumerate(sched.timesteps.tolist()):
        prev = t - stride
        a_t = ac[t]
        a_p = ac[prev] if prev >= 0 else sched.final_alpha_cumprod
        nan = torch.tensor(float("nan"))
        out.append(StepCoefs(t, (1 - a_t) ** 0.5, a_t ** 0.5, a_p ** 0.5, (1 - a_p) ** 0.5, nan, nan, nan, weights[j]))
    return StepTables("ddim", "none", out)


def build_tables(scheduler_config: dict, steps: int, sampler: str, learned_sigma: bool, guidance_scale: float,
                 stop_t: int) -> StepTables:
    """Step tables for ``steps`` respaced steps of ``sampler`` with guidance ``guidance_scale`` until ``stop_t``."""
    if sampler not in SAMPLERS:
        raise FastDistillError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler}")
    train_steps = int(scheduler_config.get("num_train_timesteps", 1000))
    if not 1 <= steps <= train_steps:
        raise FastDistillError(f"--steps must be in [1, {train_steps}] (the model's training steps), got {steps}")
    weights = guidance_weights(steps, guidance_scale, stop_t)
    if sampler == "ddpm":
        return _ddpm_tables(scheduler_config, steps, learned_sigma, weights)
    return _ddim_tables(scheduler_config, steps, weights)
