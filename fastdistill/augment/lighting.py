"""AlexNet-style PCA lighting noise of the IDC / Minimax Diffusion hard-label protocol, on [0, 1] float pixels.

Per image α ~ N(0, ``alphastd``) for each of the three principal components of ImageNet's RGB pixels (IDC's
``Lighting``: eigenvalues (0.2175, 0.0188, 0.0045) and their eigenvectors), and every pixel gets the offset
Σ_k α_k λ_k v_k added (no clamp, as there). One-channel images get the luminance (0.299, 0.587, 0.114) of that RGB
offset; other channel counts are refused.
"""

from __future__ import annotations

import torch

from fastdistill.augment.color_jitter import LUMA

EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009),
          (-0.5808, -0.0045, -0.8140),
          (-0.5836, -0.6948, 0.4203))


def sample_lighting(n: int, alphastd: float, generator: torch.Generator) -> torch.Tensor:
    """α [n, 3] ~ N(0, ``alphastd``)."""
    return torch.randn(n, 3, generator=generator, device=generator.device) * alphastd


def lighting_offset(alpha: torch.Tensor) -> torch.Tensor:
    """[n, 3] RGB offsets Σ_k α_k λ_k v_k (v_k the k-th column of :data:`EIGVEC`)."""
    vec = torch.tensor(EIGVEC, dtype=alpha.dtype, device=alpha.device)
    val = torch.tensor(EIGVAL, dtype=alpha.dtype, device=alpha.device)
    return (alpha * val) @ vec.T


def apply_lighting(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Add each image's offset to all its pixels."""
    rgb = lighting_offset(alpha.to(device=x.device, dtype=x.dtype))
    if x.shape[1] == 1:
        rgb = rgb @ torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(3, 1)
    elif x.shape[1] != 3:
        raise ValueError(f"PCA lighting needs RGB or one-channel images, got {x.shape[1]} channels")
    return x + rgb.view(x.shape[0], x.shape[1], 1, 1)


def lighting(x: torch.Tensor, alphastd: float, generator: torch.Generator) -> torch.Tensor:
    """Draw and apply the lighting noise."""
    return apply_lighting(x, sample_lighting(x.shape[0], alphastd, generator))
