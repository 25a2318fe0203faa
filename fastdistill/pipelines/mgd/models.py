"""The two halves of a generator: a class-conditional noise predictor and the codec between pixels and its space.

- ``DiTDenoiser``: diffusers ``DiTTransformer2DModel`` (DiT-XL/2 layout: 4 latent channels in, 8 out = eps + learned
  variance); the null (CFG) label is ``num_embeds_ada_norm``.
- ``UNetDenoiser``: diffusers ``UNet2DModel`` with a class embedding (``num_class_embeds = classes + 1``, the last id
  is the null label) trained by ``train-diffusion`` in pixel space.
- ``VAECodec``: SD ``AutoencoderKL``; latents are ``latent_dist.mean * scaling_factor``.
- ``PixelCodec``: identity "latents" = pixels scaled to [-1, 1].
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Denoiser(ABC):
    """Calls a diffusers network on fp32 inputs and returns fp32 outputs; the network may run in bf16/fp16."""

    def __init__(self, net: nn.Module, latent_shape: tuple[int, int, int], num_classes: int, null_label: int,
                 learned_sigma: bool, dtype: torch.dtype) -> None:
        self.net = net
        self.latent_shape = latent_shape
        self.num_classes = num_classes
        self.null_label = null_label
        self.learned_sigma = learned_sigma
        self.dtype = dtype

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @abstractmethod
    def _forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The network's raw output for inputs already in its dtype."""

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: int, labels: torch.Tensor) -> torch.Tensor:
        steps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        return self._forward(x.to(self.dtype), steps, labels).float()


class DiTDenoiser(Denoiser):
    def __init__(self, net: nn.Module, dtype: torch.dtype) -> None:
        cfg = net.config
        size = cfg.sample_size
        super().__init__(net, (cfg.in_channels, size, size), cfg.num_embeds_ada_norm, cfg.num_embeds_ada_norm,
                         cfg.out_channels == 2 * cfg.in_channels, dtype)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(x, timestep=t, class_labels=labels).sample


class UNetDenoiser(Denoiser):
    def __init__(self, net: nn.Module, dtype: torch.dtype) -> None:
        cfg = net.config
        size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
        super().__init__(net, (cfg.in_channels, size, size), cfg.num_class_embeds - 1, cfg.num_class_embeds - 1,
                         cfg.out_channels == 2 * cfg.in_channels, dtype)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(x, t, class_labels=labels).sample


class PixelCodec:
    """Pixel space: latents are pixels in [-1, 1]."""

    def __init__(self, channels: int, image_size: int) -> None:
        self.channels = channels
        self.image_size = image_size
        self.fingerprint = f"pixel:{channels}x{image_size}"

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels * 2 - 1

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents + 1) / 2).clamp(0, 1)


class VAECodec:
    """SD VAE (kl-f8): ``encode`` = ``latent_dist.mean * scaling_factor`` (the mean, not a sample), as in MGD3."""

    def __init__(self, vae: nn.Module, dtype: torch.dtype, fingerprint: str) -> None:
        self.vae = vae
        self.dtype = dtype
        cfg = vae.config
        self.channels = cfg.in_channels
        self.image_size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.latent_channels = cfg.latent_channels
        self.scaling = float(cfg.scaling_factor)
        self.fingerprint = fingerprint

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        dist = self.vae.encode((pixels * 2 - 1).to(self.dtype)).latent_dist
        return dist.mean.float() * self.scaling

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode((latents / self.scaling).to(self.dtype)).sample.float()
        return ((images + 1) / 2).clamp(0, 1)
