"""A small class-conditional pixel-space diffusion model (diffusers ``UNet2DModel``) for the built-in datasets.

``train_pixel_diffusion`` trains it with the epsilon objective, label dropout for CFG and an EMA copy, writes
resumable checkpoints, and saves a diffusers-format run folder that ``mgd --diffusion RUN_DIR`` loads:
``unet/`` (EMA weights), ``scheduler/`` (linear betas, 1000 steps) and ``diffusion.json`` (dataset and classes).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastdistill.data.base import Dataset, to_float
from fastdistill.errors import FastDistillError
from fastdistill.methods.realdata import batch_source, gather
from fastdistill.pipelines.mgd._deps import require_diffusers
from fastdistill.utils.io import torch_load_checkpoint, torch_save, write_json

META = "diffusion.json"
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class PixelTrainConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    width: int = 32
    p_uncond: float = 0.1
    ema_decay: float = 0.995
    checkpoint_every: int = 250
    seed: int = 0


def build_pixel_unet(channels: int, image_size: int, num_classes: int, width: int = 32):
    """UNet2DModel: two levels up to 16 px, three above; attention at the lowest level; null label = num_classes."""
    diffusers = require_diffusers()
    levels = 2 if image_size <= 16 else 3
    if image_size % 2 ** (levels - 1):
        raise FastDistillError(f"train-diffusion needs an image size divisible by {2 ** (levels - 1)}, "
                               f"got {image_size}; pass --image-size")
    return diffusers.UNet2DModel(
        sample_size=image_size, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=tuple(width * min(2 ** i, 2) for i in range(levels)),
        down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
        norm_num_groups=8, attention_head_dim=8, num_class_embeds=num_classes + 1)


def train_scheduler():
    """The forward process the pixel model is trained on (DiT's: linear betas 1e-4 … 0.02, 1000 steps)."""
    return require_diffusers().DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                             beta_schedule="linear", clip_sample=False)


def _lr(step: int, cfg: PixelTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train_pixel_diffusion(data: Dataset, run_dir: Path, cfg: PixelTrainConfig, device: torch.device,
                          progress: bool = True) -> dict:
    """Train (or resume) and save the model into ``run_dir``; returns the metadata written to diffusion.json."""
    info = data.info
    images = batch_source(data.train.decoded().images, device)  # uint8; each batch is converted on its own
    y_all = data.train.labels.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_pixel_unet(info.channels, info.image_size, info.num_classes, cfg.width).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = train_scheduler()
    ac = sched.alphas_cumprod.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, losses = 0, []
    ckpt_path = run_dir / CHECKPOINT
    if (state := torch_load_checkpoint(ckpt_path)) is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, losses = int(state["step"]), list(state["losses"])
    start_time = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="train-diffusion", disable=not progress)
    model.train()
    while step < cfg.steps:
        idx = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        noise = torch.randn((cfg.batch_size, *images.shape[1:]), generator=gen).to(device)
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.p_uncond
        x0, labels = to_float(gather(images, idx, device)) * 2 - 1, y_all[idx.to(device)].clone()
        labels[drop.to(device)] = info.num_classes
        t = t.to(device)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = torch.nn.functional.mse_loss(model(xt, t, class_labels=labels).sample, noise)
        if not torch.isfinite(loss):
            raise FastDistillError(f"train-diffusion: loss became {loss.item()} at step {step}; lower --lr")
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            torch_save(ckpt_path, {"model": model.state_dict(), "ema": ema.state_dict(),
                                   "optimizer": opt.state_dict(), "generator": gen.get_state(), "step": step,
                                   "losses": losses})
    bar.close()
    ema.save_pretrained(run_dir / "unet")
    sched.save_pretrained(run_dir / "scheduler")
    meta = {"kind": "pixel-unet", "dataset": info.to_dict(), "train": asdict(cfg),
            "final_loss": sum(losses[-100:]) / max(1, len(losses[-100:])),
            "seconds_this_session": round(time.time() - start_time, 1)}
    write_json(run_dir / META, meta)
    return meta
