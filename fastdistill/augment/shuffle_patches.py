"""RDED's ShufflePatches: cut each image into ``factor`` column strips and shuffle them, then the same with rows.

RDED (LINs-lab/RDED, its evaluation transform) stores ``factor`` x ``factor`` mosaics of patches and trains students
with this shuffle after RandomResizedCrop(scale (1/factor, 1)) and the flip. Strips are ``W // factor`` wide, the last
one takes the remainder (RDED's code drops it, which changes the image size when ``factor`` does not divide it).
Every output pixel is an input pixel of the same image (a permutation of strips along each axis). Drawing
(:func:`sample_shuffle_patches`) and applying (:func:`apply_shuffle_patches`) are separate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PatchShuffle:
    """Per image the order of the column strips (``cols`` [B, factor]) and of the row strips (``rows``): output
    strip j is input strip ``cols[b, j]``."""

    cols: torch.Tensor
    rows: torch.Tensor


def sample_shuffle_patches(n: int, factor: int, generator: torch.Generator) -> PatchShuffle:
    """Uniform random strip orders for ``n`` images: columns first, then rows."""
    g = generator
    cols = torch.rand(n, factor, generator=g, device=g.device).argsort(dim=1)
    rows = torch.rand(n, factor, generator=g, device=g.device).argsort(dim=1)
    return PatchShuffle(cols, rows)


def _strip_index(order: torch.Tensor, size: int) -> torch.Tensor:
    """[B, size] source index of every output position along an axis of ``size`` cut into ``order.shape[1]`` strips
    (the last strip takes the remainder)."""
    factor = order.shape[1]
    pos = torch.arange(size, device=order.device)
    strip = (pos // (size // factor)).clamp(max=factor - 1)  # the strip of every input position
    rank = order.argsort(dim=1)  # output slot of every input strip
    key = rank[:, strip] * size + pos  # sort input positions by (slot of their strip, position)
    return key.argsort(dim=1)


def apply_shuffle_patches(x: torch.Tensor, params: PatchShuffle) -> torch.Tensor:
    """``x`` [B, C, H, W] with its column strips, then its row strips, in the drawn order."""
    b, c, h, w = x.shape
    cols = _strip_index(params.cols.to(x.device), w)
    x = x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))
    rows = _strip_index(params.rows.to(x.device), h)
    return x.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w))


def shuffle_patches(x: torch.Tensor, factor: int, generator: torch.Generator) -> torch.Tensor:
    """Draw and apply ShufflePatches(``factor``) to every image of ``x``; ``factor`` 1 returns ``x``."""
    if factor <= 1:
        return x
    return apply_shuffle_patches(x, sample_shuffle_patches(x.shape[0], factor, generator))
