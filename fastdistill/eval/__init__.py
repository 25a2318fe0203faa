"""Evaluation of distilled sets: student training under the hard-label (DC) and soft-label (RDED/DELT) protocols,
a random-real baseline, and the DSA / soft-label augmentations the protocols (and matching-based methods) use."""

from fastdistill.eval.augment import (
    DSA_GROUPS,
    DSA_STRATEGY,
    DSAConfig,
    DSAParams,
    apply_dsa,
    cutmix,
    dsa,
    dsa_strategy_for,
    random_resized_crop,
    resized_crop,
    sample_crop_boxes,
    sample_dsa_params,
)
from fastdistill.eval.harness import (
    DEFAULT_STUDENTS,
    RESULTS,
    evaluate_distilled,
    format_table,
    random_real_subset,
    write_results,
)
from fastdistill.eval.protocols import PROTOCOLS, Protocol, default_epochs, make_protocol, soft_batch_size
from fastdistill.eval.trainer import StudentTrainer

__all__ = [
    "DEFAULT_STUDENTS", "DSA_GROUPS", "DSA_STRATEGY", "PROTOCOLS", "RESULTS", "DSAConfig", "DSAParams", "Protocol",
    "StudentTrainer", "apply_dsa", "cutmix", "default_epochs", "dsa", "dsa_strategy_for", "evaluate_distilled",
    "format_table", "make_protocol", "random_real_subset", "random_resized_crop", "resized_crop",
    "sample_crop_boxes", "sample_dsa_params", "soft_batch_size", "write_results",
]
