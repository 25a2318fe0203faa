"""Load a generator from local folders (never the network): a ``train-diffusion`` run, or a diffusers-format DiT
(``DiTTransformer2DModel``) plus an SD VAE (``AutoencoderKL``).

Accepted ``--diffusion`` layouts:
- a ``train-diffusion`` run folder (``diffusion.json``, ``unet/``, ``scheduler/``);
- a diffusers DiT pipeline folder (``transformer/``, optional ``vae/`` and ``scheduler/``), e.g.
  ``facebook/DiT-XL-2-256`` saved locally or written by ``python -m fastdistill convert-dit``;
- a bare transformer folder (its ``config.json`` names ``DiTTransformer2DModel`` or ``Transformer2DModel``).
The VAE comes from ``--vae`` or the pipeline's ``vae/``. The scheduler is always rebuilt as DiT's (linear betas,
learned-range variance); only the beta parameters are read from a ``scheduler/`` folder.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastdistill.data.base import DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.pipelines.mgd._deps import require_diffusers
from fastdistill.pipelines.mgd.mapping import map_classes
from fastdistill.pipelines.mgd.models import Denoiser, DiTDenoiser, PixelCodec, UNetDenoiser, VAECodec
from fastdistill.pipelines.mgd.pixel_diffusion import META
from fastdistill.utils.io import read_json

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DIT_CLASSES = ("DiTTransformer2DModel", "Transformer2DModel")
DIT_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` = bf16 on CUDA, fp32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise FastDistillError(f"--dtype must be auto or one of {', '.join(DTYPES)}, got {name}")
    return DTYPES[name]


@dataclass
class Generator:
    """A noise predictor, the codec of its space, its scheduler config and what it was trained on."""

    kind: str  # "dit" or "pixel-unet"
    denoiser: Denoiser
    codec: PixelCodec | VAECodec
    scheduler_config: dict
    image_size: int
    channels: int
    default_cfg_channels: int | None
    sources: dict = field(default_factory=dict)
    trained_on: dict | None = None

    def class_ids(self, info: DatasetInfo, class_map: str | None) -> list[int]:
        """Generator label of every dataset class, checking the data fits the generator."""
        if (info.channels, info.image_size) != (self.channels, self.image_size):
            raise FastDistillError(
                f"the generator makes {self.channels}x{self.image_size}px images but {info.name} is "
                f"{info.channels}x{info.image_size}px; use matching data (imagefolder: --image-size {self.image_size})")
        if self.kind == "pixel-unet":
            trained = self.trained_on or {}
            if list(trained.get("classes", [])) != list(info.classes):
                raise FastDistillError(f"the diffusion model was trained on {trained.get('name')} with classes "
                                       f"{trained.get('classes')}; run mgd with that --dataset")
            if class_map:
                raise FastDistillError("--class-map applies to ImageNet generators (DiT), not train-diffusion models")
            return list(range(info.num_classes))
        return map_classes(info.classes, self.denoiser.num_classes, class_map)


def _load(cls, path: Path, what: str, dtype: torch.dtype, **kwargs):
    # diffusers warns on every load without `accelerate` unless told not to use its low-memory loader
    kwargs.setdefault("low_cpu_mem_usage", importlib.util.find_spec("accelerate") is not None)
    try:
        return cls.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise FastDistillError(f"cannot load the {what} from {path} ({first}); it must be a diffusers folder "
                               "(config.json + weights)") from exc


def _scheduler_config(folder: Path) -> dict:
    cfg = dict(DIT_SCHEDULE)
    file = folder / "scheduler_config.json"
    if file.exists():
        saved = read_json(file)
        cfg.update({k: saved[k] for k in DIT_SCHEDULE if k in saved})
    return cfg


def _load_pixel(path: Path, vae: str | None, device: torch.device, dtype: torch.dtype) -> Generator:
    diffusers = require_diffusers()
    if vae:
        raise FastDistillError("--vae is for latent generators (DiT); a train-diffusion model works in pixel space")
    meta = read_json(path / META)
    unet = _load(diffusers.UNet2DModel, path / "unet", "UNet", dtype).to(device).eval()
    denoiser = UNetDenoiser(unet, dtype)
    channels, size, _ = denoiser.latent_shape
    return Generator("pixel-unet", denoiser, PixelCodec(channels, size), _scheduler_config(path / "scheduler"),
                     size, channels, None, {"diffusion": str(path.resolve())}, meta["dataset"])


def _load_dit(transformer_dir: Path, vae_dir: Path, scheduler_dir: Path, device: torch.device,
              dtype: torch.dtype) -> Generator:
    diffusers = require_diffusers()
    if not (vae_dir / "config.json").exists():
        raise FastDistillError(f"no VAE at {vae_dir}; pass --vae DIR (a diffusers AutoencoderKL folder, e.g. "
                               "stabilityai/sd-vae-ft-mse saved locally)")
    net = _load(diffusers.DiTTransformer2DModel, transformer_dir, "DiT transformer", dtype).to(device).eval()
    vae = _load(diffusers.AutoencoderKL, vae_dir, "VAE", dtype).to(device).eval()
    denoiser = DiTDenoiser(net, dtype)
    codec = VAECodec(vae, dtype, f"vae:{vae_dir.resolve()}:{dtype}")
    latent_c, latent_s, _ = denoiser.latent_shape
    if codec.latent_channels != latent_c:
        raise FastDistillError(f"VAE/latent shape mismatch: the VAE at {vae_dir} makes {codec.latent_channels}-channel "
                               f"latents but the DiT expects {latent_c}; use the DiT's own VAE (SD kl-f8)")
    if codec.channels != 3:
        raise FastDistillError(f"the VAE at {vae_dir} encodes {codec.channels}-channel images; MGD3 needs an RGB VAE")
    return Generator("dit", denoiser, codec, _scheduler_config(scheduler_dir), latent_s * codec.factor, 3,
                     3 if latent_c == 4 else None,
                     {"transformer": str(transformer_dir.resolve()), "vae": str(vae_dir.resolve())})


def load_generator(diffusion: str, vae: str | None, device: torch.device, dtype: torch.dtype) -> Generator:
    """Load the generator named by ``--diffusion`` (and ``--vae``) onto ``device``."""
    path = Path(diffusion)
    if not path.is_dir():
        raise FastDistillError(f"--diffusion {diffusion} is not a folder; train one with `python -m fastdistill "
                               "train-diffusion` or point it at a diffusers DiT folder (see pipelines/mgd/README.md)")
    if (path / META).exists():
        return _load_pixel(path, vae, device, dtype)
    if (path / "transformer" / "config.json").exists():
        return _load_dit(path / "transformer", Path(vae) if vae else path / "vae", path / "scheduler", device, dtype)
    if (path / "config.json").exists() and read_json(path / "config.json").get("_class_name") in DIT_CLASSES:
        if not vae:
            raise FastDistillError(f"{path} holds only a DiT transformer; pass --vae DIR (a diffusers AutoencoderKL)")
        return _load_dit(path, Path(vae), path / "scheduler", device, dtype)
    raise FastDistillError(f"{path} is neither a train-diffusion run ({META}) nor a diffusers DiT folder "
                           "(transformer/config.json); see pipelines/mgd/README.md")
