"""Batched mode-guided sampling: every (class, mode) row of a chunk goes through the network together.

Each row has its own seed (from the run seed, its class and its mode index) and pre-drawn noise (``x_T`` and one
tensor per step), so a row's result does not depend on which rows share its batch: batched == row by row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from fastdistill.errors import FastDistillError
from fastdistill.pipelines.mgd.models import Denoiser
from fastdistill.pipelines.mgd.schedule import StepTables, build_tables, stop_index
from fastdistill.pipelines.mgd.step import cfg_combine, ddim_step, ddpm_step

StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class GuidanceConfig:
    """Sampler settings; defaults are the paper's (DDPM 50 steps, lambda 0.1, stop at 25 of 50, CFG 4.0)."""

    steps: int = 50
    sampler: str = "ddpm"
    guidance_scale: float = 0.1
    stop_guidance: float = 0.5
    cfg_scale: float = 4.0
    cfg_channels: int | None = None  # None: all latent channels
    precision: str = "fp32"  # "bf16": the network under bf16 autocast (the sampler math stays fp32)
    channels_last: bool = False  # channels-last network inputs and weights

    def tables(self, scheduler_config: dict, learned_sigma: bool) -> StepTables:
        return build_tables(scheduler_config, self.steps, self.sampler, learned_sigma, self.guidance_scale,
                            stop_index(self.steps, self.stop_guidance))


def row_seed(seed: int, class_index: int, mode_index: int) -> int:
    """A 63-bit seed for one (class, mode) row, independent of batching."""
    state = np.random.SeedSequence([seed, class_index, mode_index]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def row_noise(seeds: list[int], shape: tuple[int, ...], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_T`` [B, *shape] and per-step noise [steps, B, *shape] (fp32, CPU), drawn per row from its own seed."""
    draws = []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        draws.append(torch.randn((steps + 1, *shape), generator=g))
    stacked = torch.stack(draws, dim=1)
    return stacked[0], stacked[1:]


@torch.no_grad()
def sample(denoiser: Denoiser, tables: StepTables, labels: torch.Tensor, modes: torch.Tensor | None,
           x_t: torch.Tensor, noise: torch.Tensor | None, cfg_scale: float, cfg_channels: int | None = None,
           callback: StepCallback | None = None, precision: str = "fp32",
           channels_last: bool = False) -> torch.Tensor:
    """Run the whole reverse process for one batch of rows; returns final latents (fp32, on x_t's device).

    ``modes`` [B, *latent] are the guidance targets (None = unguided); ``noise[j]`` is added at step j (DDPM).
    ``callback(j, x_prev, x0_hat)`` sees every step (x0_hat before guidance). ``precision="bf16"`` runs the network
    under bf16 autocast; ``channels_last`` feeds it channels-last inputs (its weights are converted in place).
    """
    x = x_t.float()
    channels = x.shape[1]
    use_cfg = cfg_scale != 1.0
    both = torch.cat([labels, torch.full_like(labels, denoiser.null_label)]) if use_cfg else labels
    learned = tables.variance == "learned_range"
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        denoiser.net.to(memory_format=torch.channels_last)

    def network(inputs: torch.Tensor, t: int, rows: torch.Tensor) -> torch.Tensor:
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return denoiser(inputs.contiguous(memory_format=layout), t, rows).contiguous()

    for j, c in enumerate(tables.steps):
        if use_cfg:
            cond, uncond = network(torch.cat([x, x]), c.t, both).chunk(2)
            eps = cfg_combine(cond[:, :channels], uncond[:, :channels], cfg_scale, cfg_channels)
        else:
            cond = network(x, c.t, labels)
            eps = cond[:, :channels]
        if tables.sampler == "ddpm":
            x, x0 = ddpm_step(x, eps, cond[:, channels:] if learned else None, c, modes,
                              None if noise is None else noise[j])
        else:
            x, x0 = ddim_step(x, eps, c, modes)
        if callback is not None:
            callback(j, x, x0)
    return x


def sample_rows(denoiser: Denoiser, config: GuidanceConfig, scheduler_config: dict, labels: torch.Tensor,
                modes: torch.Tensor | None, seeds: list[int], batch_size: int, progress: bool = False) -> torch.Tensor:
    """Sample ``len(seeds)`` rows in chunks of ``batch_size`` rows; returns latents on the CPU (fp32)."""
    if len(seeds) != labels.shape[0] or (modes is not None and modes.shape[0] != labels.shape[0]):
        raise FastDistillError("labels, modes and seeds must describe the same rows")
    tables = config.tables(scheduler_config, denoiser.learned_sigma)
    device = denoiser.device
    out = []
    for start in tqdm(range(0, len(seeds), batch_size), desc="sampling", leave=False, disable=not progress):
        stop = start + batch_size
        x_t, noise = row_noise(seeds[start:stop], denoiser.latent_shape, config.steps)
        rows_modes = None if modes is None else modes[start:stop].to(device, torch.float32)
        x = sample(denoiser, tables, labels[start:stop].to(device), rows_modes, x_t.to(device), noise.to(device),
                   config.cfg_scale, config.cfg_channels, precision=config.precision,
                   channels_last=config.channels_last)
        out.append(x.cpu())
    return torch.cat(out)
