"""MGD3 end to end: real latents (one streamed pass into a memory-mapped cache) -> modes class by class -> batched
guided sampling -> decode -> standard outputs.

Rows are all (class, mode) pairs in class-major order; they are generated in chunks of ``batch_size`` rows, each
chunk saved as ``samples/chunk_*.pt`` (uint8 pixels) so ``--resume`` skips finished chunks. Under torchrun the chunks
are dealt to the ranks (every row has its own seed, so a chunk's pixels do not depend on who samples it) and rank 0
writes the outputs from all the chunk files.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastdistill.data.base import Dataset, to_float, to_uint8
from fastdistill.errors import FastDistillError
from fastdistill.pipelines.mgd.latents import cache_meta, check_cache, data_identity, encode_cached
from fastdistill.pipelines.mgd.loading import Generator
from fastdistill.pipelines.mgd.modes import discover_modes
from fastdistill.pipelines.mgd.sampler import GuidanceConfig, row_seed, sample_rows
from fastdistill.pipelines.mgd.schedule import guided_step_count, stop_index
from fastdistill.pipelines.outputs import save_distilled, save_on_main
from fastdistill.utils import distributed
from fastdistill.utils.io import torch_load_checkpoint, torch_save

DECODE_BATCH = 32


@dataclass(frozen=True)
class MGDConfig:
    """``seed`` draws the sampling noise; ``kmeans_seed`` only the mode discovery (k-means, GMM or random picks),
    fixed by default as in the reference, so generation seeds share one set of modes."""

    ipc: int = 10
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    modes: str = "kmeans"
    closest_real: bool = False
    batch_size: int = 100
    seed: int = 0
    kmeans_seed: int = 0
    class_map: str | None = None
    latent_cache: str | None = None  # default: <run_dir>/latents


def _decode(codec, latents: torch.Tensor, device: torch.device) -> torch.Tensor:
    out = [codec.decode(latents[i:i + DECODE_BATCH].to(device)).cpu() for i in range(0, latents.shape[0], DECODE_BATCH)]
    return to_uint8(torch.cat(out))


def _modes(data: Dataset, gen: Generator, cfg: MGDConfig, run_dir: Path, device: torch.device,
           progress: bool) -> torch.Tensor:
    """Modes [classes, ipc, *latent] from the cached real latents (``run_dir/modes.pt`` once computed)."""
    modes_file = run_dir / "modes.pt"
    if distributed.broadcast(modes_file.exists()) and (modes := torch_load_checkpoint(modes_file)) is not None:
        return modes
    cache = Path(cfg.latent_cache) if cfg.latent_cache else run_dir / "latents"
    latents = encode_cached(gen.codec, data.train, cache, cfg.batch_size, device, data_identity(data), progress)
    modes = discover_modes(latents, data.train.labels, data.info.classes, cfg.ipc, cfg.modes, cfg.closest_real,
                           cfg.kmeans_seed)
    if distributed.is_main():
        torch_save(modes_file, modes)
    return modes


def check_inputs(data: Dataset, gen: Generator, cfg: MGDConfig) -> list[int]:
    """Refuse data the generator cannot serve, too few images per class, or a latent cache that is a file; returns
    the generator label of every class. Called before anything is written."""
    info = data.info
    class_ids = gen.class_ids(info, cfg.class_map)
    counts = torch.bincount(data.train.labels, minlength=info.num_classes)
    small = [(n, int(k)) for n, k in zip(info.classes, counts, strict=True) if k < cfg.ipc]
    if small:
        raise FastDistillError(f"--ipc {cfg.ipc} is larger than class {small[0][0]!r} ({small[0][1]} training images); "
                               "lower --ipc")
    if cfg.latent_cache and Path(cfg.latent_cache).exists() and not Path(cfg.latent_cache).is_dir():
        raise FastDistillError(f"--latent-cache {cfg.latent_cache} is a file; name a folder for the cached latents")
    if cfg.latent_cache and cfg.guidance.guidance_scale != 0:  # a cache made from other data: refused up front
        check_cache(Path(cfg.latent_cache), cache_meta(gen.codec, len(data.train), data_identity(data)))
    return class_ids


def run_mgd(data: Dataset, gen: Generator, cfg: MGDConfig, run_dir: Path, device: torch.device,
            progress: bool = True) -> dict:
    """Generate the distilled set into ``run_dir``; returns the tensor record written to ``distilled.pt`` with
    ``sampling_seconds``, this session's sampling time (all ranks' chunks).

    With ``guidance_scale == 0`` no modes are needed (plain class-conditional sampling with the same per-row noise).
    """
    info = data.info
    class_ids = check_inputs(data, gen, cfg)
    guidance = cfg.guidance
    if guidance.cfg_channels is None and gen.default_cfg_channels is not None:
        guidance = GuidanceConfig(**{**asdict(guidance), "cfg_channels": gen.default_cfg_channels})
    modes = None if guidance.guidance_scale == 0 else _modes(data, gen, cfg, run_dir, device, progress)
    rows = [(c, k) for c in range(info.num_classes) for k in range(cfg.ipc)]
    labels = torch.tensor([c for c, _ in rows])
    gen_labels = torch.tensor([class_ids[c] for c, _ in rows])
    flat_modes = None if modes is None else modes.reshape(-1, *modes.shape[2:])
    seeds = [row_seed(cfg.seed, c, k) for c, k in rows]
    samples_dir = run_dir / "samples"
    samples_dir.mkdir(exist_ok=True)
    starts = list(enumerate(range(0, len(rows), cfg.batch_size)))

    def sample_mine() -> None:  # this rank's chunks (all of them in one process)
        for n, start in tqdm(distributed.deal(starts), desc=f"{distributed.world().tag}MGD3 chunks",
                             disable=not progress):
            file = samples_dir / f"chunk_{n:05d}.pt"
            if torch_load_checkpoint(file) is None:
                stop = start + cfg.batch_size
                latents = sample_rows(gen.denoiser, guidance, gen.scheduler_config, gen_labels[start:stop],
                                      None if flat_modes is None else flat_modes[start:stop], seeds[start:stop],
                                      cfg.batch_size, progress)
                torch_save(file, _decode(gen.codec, latents, device))

    started = time.perf_counter()
    distributed.agree(sample_mine)
    sampling_seconds = time.perf_counter() - started  # until the slowest rank is done
    chunks = []
    for n, _ in starts:
        if (chunk := torch_load_checkpoint(samples_dir / f"chunk_{n:05d}.pt")) is None:
            raise FastDistillError(f"{samples_dir}: chunk {n} is missing after sampling; --output must be on a file "
                                   "system every rank shares")
        chunks.append(chunk)
    images = torch.cat(chunks)
    steps = guidance.steps
    extra = {"method": "mgd3", "generator": gen.kind, "generator_sources": gen.sources, "class_ids": class_ids,
             "guided_steps": guided_step_count(steps, stop_index(steps, guidance.stop_guidance))
             if guidance.guidance_scale else 0,
             "mgd": {**asdict(cfg), "guidance": asdict(guidance)}}
    record = save_on_main(run_dir, lambda: save_distilled(run_dir, to_float(images), labels, info,
                                                          tags=[f"mode{k:03d}" for _, k in rows], extra=extra))
    return {**record, "sampling_seconds": sampling_seconds}  # this session's time (not saved with the images)
