"""DELT settings: the DELT scripts' ImageNet-scale defaults, then the dataset spec's presets, then the user's flags.

The defaults are the DELT scripts' (4000 iterations, rounds of 500, Adam lr 0.25, r_bn 0.01). The small built-in
datasets' shorter schedules are in their specs (``delt`` of :class:`fastdistill.data.specs.DatasetPresets`). Flips
follow the spec's mirror symmetry; the teacher trained when ``--teacher`` is absent is the spec's ``teacher_arch``,
else a ResNet-18 chosen by resolution (:func:`fastdistill.data.specs.default_teacher_arch`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from fastdistill.data.specs import dataset_presets, mirror_symmetric, teacher_arch_for
from fastdistill.errors import FastDistillError

MODES = ("fast", "compat")
PRECISIONS = ("fp32", "bf16")

_DEFAULT = {"ipc": 10, "iterations": 4000, "round_iterations": 500, "lr": 0.25, "r_bn": 0.01, "crop_floor": 0.08}


@dataclass
class DELTConfig:
    """Everything that shapes a DELT run (stored in config.json)."""

    dataset: str = "digits"
    ipc: int = 10
    iterations: int = 4000
    round_iterations: int = 500
    min_iterations: int | None = None
    lr: float = 0.25
    r_bn: float = 0.01
    first_bn_multiplier: float = 10.0
    jitter: int = 0
    crop: str = "cosine"
    milestone: float = 1.0
    crop_floor: float = 0.08
    flip: bool = True
    batch_size: int = 100
    selection: str = "medium"
    mode: str = "fast"
    groups_per_launch: int = 0
    precision: str = "fp32"
    channels_last: bool = False
    backend: str = "auto"
    teacher_arch: str = "convnet3-bn"
    eval_protocols: str = "hard,soft"
    eval_epochs: int | None = None
    seed: int = 0

    @classmethod
    def for_dataset(cls, dataset: str, image_size: int | None = None, **overrides: object) -> DELTConfig:
        """The dataset's preset, then every override that is not None.

        ``image_size`` (default: the registered spec's) picks the teacher of a dataset without a preset teacher
        (it is needed for a dataset outside the registry unless ``teacher_arch`` is given).
        """
        values = {**_DEFAULT, "flip": mirror_symmetric(dataset), **dataset_presets(dataset).delt, "dataset": dataset}
        if overrides.get("teacher_arch") is None:
            values["teacher_arch"] = teacher_arch_for(dataset, image_size)
        values.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @property
    def resolved_min_iterations(self) -> int:
        return self.iterations if self.min_iterations is None else self.min_iterations

    def to_dict(self) -> dict:
        return asdict(self)


def validate(cfg: DELTConfig) -> None:
    """Raise a one-line FastDistillError for settings that cannot run."""
    if cfg.mode not in MODES:
        raise FastDistillError(f"--mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if cfg.precision not in PRECISIONS:
        raise FastDistillError(f"--precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    if cfg.ipc < 1 or cfg.batch_size < 1 or cfg.iterations < 1 or cfg.round_iterations < 1:
        raise FastDistillError("--ipc, --batch-size, --iterations and --round-iterations must be positive")
    if cfg.iterations % cfg.round_iterations:
        raise FastDistillError(f"--iterations {cfg.iterations} must be a multiple of --round-iterations "
                               f"{cfg.round_iterations}")
    if not cfg.round_iterations <= cfg.resolved_min_iterations <= cfg.iterations:
        raise FastDistillError(f"--min-iterations must lie in [{cfg.round_iterations}, {cfg.iterations}]")
    if not 0 < cfg.crop_floor <= 1:
        raise FastDistillError(f"--crop-floor must be in (0, 1], got {cfg.crop_floor}")
    if cfg.lr <= 0 or cfg.r_bn < 0:
        raise FastDistillError("--lr must be positive and --r-bn non-negative")
