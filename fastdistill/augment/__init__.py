"""Augmentations, batched on the images' device and driven by an explicit ``torch.Generator``.

- :mod:`~fastdistill.augment.dsa`: DSA, the matching methods' siamese augmentation (and the hard-label protocol's);
- :mod:`~fastdistill.augment.crop`: RandomResizedCrop (torchvision's box sampler, per-sample resized crops);
- :mod:`~fastdistill.augment.cutmix`: CutMix for soft-label student training;
- :mod:`~fastdistill.augment.cropmix`: the soft-label protocol's crop, flip and CutMix as drawn parameters;
- :mod:`~fastdistill.augment.groups`: DELT's per-group crops, flips and jitter during recover;
- :mod:`~fastdistill.augment.translate`: the squeeze (teacher training) translation + flip;
- :mod:`~fastdistill.augment.randaugment`, :mod:`~fastdistill.augment.shuffle_patches`,
  :mod:`~fastdistill.augment.color_jitter`, :mod:`~fastdistill.augment.lighting`: the named evaluation protocols'
  RandAugment (DELT), ShufflePatches (RDED), ColorJitter and PCA lighting (IDC / Minimax Diffusion).
"""

from fastdistill.augment.color_jitter import color_jitter
from fastdistill.augment.crop import random_resized_crop, resized_crop, sample_box, sample_crop_boxes
from fastdistill.augment.cropmix import CropMix, apply_crop_mix, sample_crop_mix
from fastdistill.augment.cutmix import CutMixParams, apply_cutmix, cutmix, sample_cutmix
from fastdistill.augment.dsa import (
    DSA_GROUPS,
    DSA_STRATEGY,
    DSAConfig,
    DSAParams,
    apply_dsa,
    dsa,
    dsa_strategy_for,
    sample_dsa_params,
)
from fastdistill.augment.groups import crop_flip_groups, jitter_groups, random_crop_flip_groups, reference_crop_flip
from fastdistill.augment.lighting import lighting
from fastdistill.augment.randaugment import rand_augment
from fastdistill.augment.shuffle_patches import shuffle_patches
from fastdistill.augment.translate import translate_flip

__all__ = [
    "DSA_GROUPS", "DSA_STRATEGY", "CropMix", "CutMixParams", "DSAConfig", "DSAParams", "apply_crop_mix",
    "apply_cutmix", "apply_dsa", "color_jitter", "crop_flip_groups", "cutmix", "dsa", "dsa_strategy_for",
    "jitter_groups", "lighting", "rand_augment", "random_crop_flip_groups", "random_resized_crop",
    "reference_crop_flip", "resized_crop", "sample_box", "sample_crop_boxes", "sample_crop_mix", "sample_cutmix",
    "sample_dsa_params", "shuffle_patches", "translate_flip",
]
