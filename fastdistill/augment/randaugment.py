"""RandAugment for DELT's student training, per image, seeded from an explicit generator.

DELT trains its students with timm's ``rand-m6-n2-mstd1.0`` on PIL images (spec delt.md §7). This applies
torchvision's :class:`~torchvision.transforms.v2.RandAugment` to each uint8 image of a batch: ``num_ops`` operations
drawn from torchvision's 14 (identity, shear, translate, rotate, brightness, colour, contrast, sharpness, posterize,
solarize, auto-contrast, equalize), at ``magnitude`` out of 10 (11 magnitude bins, so m6 is 60% of each operation's
largest strength, as timm's scale of 10), with ``fill`` for the uncovered pixels (timm: the ImageNet mean). Not
reproduced: timm's per-operation magnitude noise (mstd 1.0) and its operation set and ranges (torchvision's differ).

torchvision draws from the global CPU generator; here one seed per batch is drawn from ``generator`` and the
operations run under that seed in a forked RNG, so the global state is untouched and the same generator gives the
same images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

MAGNITUDE_BINS = 11  # magnitudes 0..10, as timm's


def rand_augment(images: torch.Tensor, generator: torch.Generator, magnitude: int = 6, num_ops: int = 2,
                 fill: Sequence[float] | None = None) -> torch.Tensor:
    """RandAugment each image of uint8 ``images`` [B, C, H, W] independently; returns uint8 [B, C, H, W].

    ``fill``: one value per channel in 0..255 for pixels moved in from outside the image (default 0)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"rand_augment takes uint8 [B, C, H, W] images, got {images.dtype} {tuple(images.shape)}")
    op = v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=MAGNITUDE_BINS,
                        fill=None if fill is None else [float(f) for f in fill])
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return torch.stack([op(image) for image in images])
