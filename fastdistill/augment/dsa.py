"""DSA, differentiable siamese augmentation (Zhao & Bilen 2021; the DC/DSA/DM/MTT strategy
``color_crop_cutout_flip_scale_rotate``), batched on the images' device.

Every transform is a differentiable function of the images, and the random parameters are drawn separately from
their application, so the *same* draw can be applied to two batches::

    params = sample_dsa_params(len(real), real.shape[-2:], generator=g, shared=True)
    loss = match(net(apply_dsa(real, params)), net(apply_dsa(syn, params)))   # siamese: identical transform

``shared=True`` draws one parameter set for the whole batch (the reference's siamese ``seed != -1`` mode), so it
applies to batches of any size; ``shared=False`` draws one set per sample (the reference's evaluation mode,
``seed=-1``). With ``DSAConfig.single`` (the reference's ``aug_mode='S'``, default) one transform group, chosen at
random per call, is applied to the batch; otherwise all groups are applied in strategy order (``aug_mode='M'``).
DSA works on normalized images: crop/rotate/scale fill with 0 and cutout writes 0, i.e. the dataset mean.
All randomness comes from an explicit ``torch.Generator``: same seed, same augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from fastdistill.augment.draws import randint, uniform
from fastdistill.data.specs import mirror_symmetric

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
DSA_GROUPS = ("color", "crop", "cutout", "flip", "scale", "rotate")


def dsa_strategy_for(dataset: str) -> str:
    """The DC/DSA strategy for a dataset: the full strategy, without ``flip`` where the spec is not mirror-symmetric."""
    if not mirror_symmetric(dataset):
        return DSA_STRATEGY.replace("_flip", "")
    return DSA_STRATEGY


@dataclass(frozen=True)
class DSAConfig:
    """Strategy and magnitudes (the reference ``ParamDiffAug`` defaults).

    brightness: x + (u - 0.5) * brightness; saturation: channel deviation x u * saturation; contrast: deviation from
    the image mean x (u + contrast); crop_pad: max shift as a fraction of the side (0.125 = ±4 px at 32);
    cutout: side fraction of the zeroed square; flip_p: probability of a horizontal flip; scale: per-axis factor in
    [1/scale, scale]; rotate: max angle in degrees.
    """

    strategy: str = DSA_STRATEGY
    single: bool = True
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    crop_pad: float = 0.125
    cutout: float = 0.5
    flip_p: float = 0.5
    scale: float = 1.2
    rotate: float = 15.0

    @property
    def groups(self) -> tuple[str, ...]:
        groups = tuple(g for g in self.strategy.split("_") if g and g.lower() != "none")
        unknown = [g for g in groups if g not in DSA_GROUPS]
        if unknown:
            raise ValueError(f"unknown DSA transform(s) {unknown}; use {'_'.join(DSA_GROUPS)}")
        return groups


@dataclass
class DSAParams:
    """One draw of DSA parameters: the groups to apply, in order, and their tensors (leading dim N, or 1 if shared).

    ``values``: ``brightness``, ``saturation``, ``contrast`` [n] in [0, 1); ``shift`` [n, 2] integer (dy, dx);
    ``cutout`` [n, 2] integer centre (y, x); ``flip`` [n] bool; ``scale`` [n, 2] (x, y factors); ``angle`` [n] radians.
    Indexing or ``repeat_interleave`` on dim 0 of every value gives a valid draw for a reordered/grouped batch.
    """

    groups: tuple[str, ...]
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    config: DSAConfig = field(default_factory=DSAConfig)
    size: tuple[int, int] = (0, 0)

    @property
    def batch(self) -> int:
        return next((v.shape[0] for v in self.values.values()), 1)


def sample_dsa_params(batch: int, size: tuple[int, int] | torch.Size, *, generator: torch.Generator,
                      config: DSAConfig = DSAConfig(), shared: bool = False) -> DSAParams:
    """Draw DSA parameters for ``batch`` images of spatial ``size`` (H, W) on ``generator.device``.

    ``shared=True``: one draw broadcast to every image (siamese use; the result applies to batches of any size).
    """
    groups = config.groups
    if groups and config.single:
        groups = (groups[int(torch.randint(len(groups), (1,), generator=generator, device=generator.device))],)
    n = 1 if shared else batch
    h, w = int(size[0]), int(size[1])
    v: dict[str, torch.Tensor] = {}
    for group in groups:
        if group == "color":
            v["brightness"] = uniform(n, generator)
            v["saturation"] = uniform(n, generator)
            v["contrast"] = uniform(n, generator)
        elif group == "crop":
            sh, sw = int(h * config.crop_pad + 0.5), int(w * config.crop_pad + 0.5)
            v["shift"] = torch.stack([randint(-sh, sh, n, generator), randint(-sw, sw, n, generator)], 1)
        elif group == "cutout":
            ch, cw = int(h * config.cutout + 0.5), int(w * config.cutout + 0.5)
            v["cutout"] = torch.stack([randint(0, h - ch % 2, n, generator), randint(0, w - cw % 2, n, generator)], 1)
        elif group == "flip":
            v["flip"] = uniform(n, generator) < config.flip_p
        elif group == "scale":
            lo, hi = 1.0 / config.scale, config.scale
            v["scale"] = torch.stack([uniform(n, generator, lo, hi), uniform(n, generator, lo, hi)], 1)
        elif group == "rotate":
            v["angle"] = uniform(n, generator, -1.0, 1.0) * math.radians(config.rotate)
    return DSAParams(groups, v, config, (h, w))


def _per_sample(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.expand(n, *t.shape[1:]) if t.shape[0] == 1 else t


def _color(x: torch.Tensor, v: dict[str, torch.Tensor], cfg: DSAConfig) -> torch.Tensor:
    b, s, c = (v[k].to(x.dtype).view(-1, 1, 1, 1) for k in ("brightness", "saturation", "contrast"))
    x = x + (b - 0.5) * cfg.brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (s * cfg.saturation) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (c + cfg.contrast) + mean


def _crop(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Translate by integer (dy, dx); pixels shifted in are 0."""
    n, c, h, w = x.shape
    shift = _per_sample(shift, n)
    rows = (torch.arange(h, device=x.device) + shift[:, :1] + 1).clamp(0, h + 1)  # [N, H] in padded coordinates
    cols = (torch.arange(w, device=x.device) + shift[:, 1:] + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2))
    return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def _cutout(x: torch.Tensor, centre: torch.Tensor, cfg: DSAConfig) -> torch.Tensor:
    h, w = x.shape[-2:]
    ch, cw = int(h * cfg.cutout + 0.5), int(w * cfg.cutout + 0.5)
    top, left = centre[:, :1] - ch // 2, centre[:, 1:] - cw // 2
    r = torch.arange(h, device=x.device)
    col = torch.arange(w, device=x.device)
    in_rows = (r >= top) & (r < top + ch)  # [N|1, H]
    in_cols = (col >= left) & (col < left + cw)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    theta = _per_sample(theta.to(x.dtype), x.shape[0])
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _scale_theta(s: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(s[:, 0])
    return torch.stack([torch.stack([s[:, 0], zero, zero], 1), torch.stack([zero, s[:, 1], zero], 1)], 1)


def _rotate_theta(a: torch.Tensor) -> torch.Tensor:
    cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
    return torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)


def apply_dsa(x: torch.Tensor, params: DSAParams) -> torch.Tensor:
    """Apply a parameter draw to images [N, C, H, W] (differentiable in ``x``)."""
    if tuple(x.shape[-2:]) != params.size:
        raise ValueError(f"DSA parameters were drawn for size {params.size}, images are {tuple(x.shape[-2:])}")
    if params.batch not in (1, x.shape[0]):
        raise ValueError(f"DSA parameters hold {params.batch} draws for a batch of {x.shape[0]}; draw with shared=True")
    v, cfg = params.values, params.config
    for group in params.groups:
        if group == "color":
            x = _color(x, v, cfg)
        elif group == "crop":
            x = _crop(x, v["shift"])
        elif group == "cutout":
            x = _cutout(x, v["cutout"], cfg)
        elif group == "flip":
            x = torch.where(v["flip"].view(-1, 1, 1, 1), x.flip(3), x)
        elif group == "scale":
            x = _affine(x, _scale_theta(v["scale"]))
        elif group == "rotate":
            x = _affine(x, _rotate_theta(v["angle"]))
    return x.contiguous()


def dsa(x: torch.Tensor, generator: torch.Generator, config: DSAConfig = DSAConfig(),
        shared: bool = False) -> torch.Tensor:
    """Draw and apply in one call (per-sample parameters unless ``shared``)."""
    return apply_dsa(x, sample_dsa_params(x.shape[0], x.shape[-2:], generator=generator, config=config, shared=shared))
