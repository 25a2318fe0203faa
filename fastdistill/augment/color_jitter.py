"""ColorJitter of the IDC / Minimax Diffusion hard-label protocol, on [0, 1] float pixels, per image.

IDC's ``data.py`` (copied by MinimaxDiffusion and MGD³; spec mgd.md §6) jitters tensors after ``ToTensor``:
brightness, contrast and saturation in a random order per image, each ``img.lerp(target, α)`` with α uniform in
[-v, v]: brightness towards black, contrast towards the mean of the image's grayscale, saturation towards the
grayscale (0.299 R + 0.587 G + 0.114 B). No clamp afterwards, as there. A one-channel image is its own grayscale,
so saturation leaves it unchanged. Drawing (:func:`sample_color_jitter`) and applying (:func:`apply_color_jitter`)
are separate; all draws come from the given generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdistill.augment.draws import uniform

LUMA = (0.299, 0.587, 0.114)
OPS = ("brightness", "contrast", "saturation")


@dataclass(frozen=True)
class ColorJitterParams:
    """Per image: ``order`` [B, 3] (indices into :data:`OPS`, applied left to right) and ``alpha`` [B, 3] (the lerp
    weight of each op, by op index)."""

    order: torch.Tensor
    alpha: torch.Tensor


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> its grayscale broadcast to C channels (three-channel images; others are returned as they are)."""
    if x.shape[1] != 3:
        return x
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x)


def sample_color_jitter(n: int, strength: float, generator: torch.Generator) -> ColorJitterParams:
    """A random order of the three ops and α uniform in [-``strength``, ``strength``] for each, for ``n`` images."""
    order = torch.rand(n, 3, generator=generator, device=generator.device).argsort(dim=1)
    alpha = uniform(n * 3, generator, -strength, strength).view(n, 3)
    return ColorJitterParams(order, alpha)


def _target(x: torch.Tensor, op: int) -> torch.Tensor:
    if op == 0:
        return torch.zeros_like(x)
    gray = grayscale(x)
    return gray.mean(dim=(1, 2, 3), keepdim=True).expand_as(x) if op == 1 else gray


def apply_color_jitter(x: torch.Tensor, params: ColorJitterParams) -> torch.Tensor:
    """Apply each image's three lerps in its order."""
    order, alpha = params.order.to(x.device), params.alpha.to(device=x.device, dtype=x.dtype)
    view = (-1, 1, 1, 1)
    for step in range(3):
        op = order[:, step]
        out = x
        for k in range(3):
            a = torch.where(op == k, alpha[:, k], torch.zeros_like(alpha[:, k])).view(view)
            out = out + a * (_target(x, k) - x)  # lerp(x, target, a) for the images whose op at this step is k
        x = out
    return x


def color_jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Draw and apply the jitter with brightness = contrast = saturation = ``strength``."""
    return apply_color_jitter(x, sample_color_jitter(x.shape[0], strength, generator))
