"""Siamese DSA for all classes in one call: every class draws its own parameters, shared by its real and its
synthetic images (the reference draws one seed per class and calls DiffAugment twice per class).

Difference from the reference: the transform group (``aug_mode='S'``: one of color/crop/cutout/flip/scale/rotate) is
drawn once per call for all classes, not once per class; the parameters within the group are drawn per class.
"""

from __future__ import annotations

import torch

from fastdistill.augment.dsa import DSAConfig, DSAParams, apply_dsa, sample_dsa_params


def repeat_params(params: DSAParams, n: int) -> DSAParams:
    """Draw ``c`` applied to images ``c*n ... c*n + n - 1``."""
    values = {k: v.repeat_interleave(n, 0) for k, v in params.values.items()}
    return DSAParams(params.groups, values, params.config, params.size)


def siamese_per_class(real: torch.Tensor, syn: torch.Tensor, generator: torch.Generator, config: DSAConfig,
                      num_classes: int | None = None, classes: range | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment class-major batches ``real [C, B, ...]`` and ``syn [C, k, ...]`` with one draw per class.

    ``num_classes`` / ``classes``: draw for ``num_classes`` classes (the same draws whoever augments them) and apply
    only those of ``classes``, which ``real`` and ``syn`` then hold (a torchrun rank's share of the classes)."""
    b, k = real.shape[1], syn.shape[1]
    params = sample_dsa_params(num_classes or real.shape[0], real.shape[-2:], generator=generator, config=config)
    if classes is not None:
        params = DSAParams(params.groups, {k: v[classes.start:classes.stop] for k, v in params.values.items()},
                           params.config, params.size)
    real_aug = apply_dsa(real.flatten(0, 1), repeat_params(params, b)).view_as(real)
    syn_aug = apply_dsa(syn.flatten(0, 1), repeat_params(params, k)).view_as(syn)
    return real_aug, syn_aug
