"""One entry per dataset: its loader, geometry, normalization, mirror symmetry and every per-dataset preset.

Adding a dataset is one :class:`DatasetSpec` in :data:`DATASET_SPECS` plus its loader. The presets are plain data
read by the layers above (squeeze, DELT, the matching methods, evaluation, the MTT buffer); each one only overrides
that layer's own default, so an empty preset means "the method's defaults".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from fastdistill.data.access import DataAccess
from fastdistill.data.base import Dataset, DatasetInfo
from fastdistill.data.digits import load_digits_dataset
from fastdistill.data.fashion_mnist import load_fashion_mnist
from fastdistill.data.imagefolder import load_imagefolder
from fastdistill.data.stats import IMAGENET_MEAN, IMAGENET_STD
from fastdistill.data.torchvision_sets import load_torchvision
from fastdistill.errors import FastDistillError

# Largest side at which a teacher trained without a preset keeps the CIFAR stem: the DELT reference trains
# ResNet-18-mod (3x3 stride-1 conv1, no max-pool) at CIFAR's 32 px and Tiny-ImageNet's 64 px, torchvision's
# ResNet-18 at 224 px (shared/specs/delt.md, recover.py L235-239 and L349-371).
CIFAR_STEM_MAX_SIZE = 64


@dataclass(frozen=True)
class DatasetPresets:
    """Per-dataset overrides of each layer's defaults (``None`` / empty: that layer's default).

    ``teacher_arch`` (``None``: :func:`default_teacher_arch` of the image size) and ``teacher_epochs``: the teacher
    that ``squeeze`` and DELT train; ``delt``: :class:`DELTConfig` fields; ``methods``: ``MethodConfig`` fields per
    method (``dm``, ``dc``, ``dsa``, ``mtt``); ``eval_epochs``: student epochs per protocol (``hard``, ``soft``);
    ``buffer_batch``: the MTT experts' batch size.
    """

    teacher_arch: str | None = None
    teacher_epochs: int | None = None
    delt: Mapping[str, object] = field(default_factory=dict)
    methods: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    eval_epochs: Mapping[str, int] = field(default_factory=dict)
    buffer_batch: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: ``image_size`` is the default side (imagefolder takes ``--image-size``)."""

    name: str
    loader: Loader
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mirror_symmetric: bool = True
    presets: DatasetPresets = field(default_factory=DatasetPresets)

    def info(self, classes: tuple[str, ...], image_size: int | None = None) -> DatasetInfo:
        """The :class:`DatasetInfo` of a loaded copy with ``classes`` (read from the data) at ``image_size``."""
        return DatasetInfo(self.name, tuple(classes), self.channels, image_size or self.image_size, self.mean,
                           self.std)


Loader = Callable[[DatasetSpec, str | None, bool, int | None, DataAccess], Dataset]
"""``loader(spec, root, download, image_size, access)``: both splits (in memory, or streamed as ``access`` says),
described by ``spec.info(classes, size)``."""

# Small built-in datasets: DELT schedules measured on a 2-core CPU (README "DELT"); this package's choice, not the
# paper's (whose ImageNet-scale defaults live in DELTConfig).
_SMALL_DELT = {"ipc": 10, "iterations": 1000, "round_iterations": 125, "lr": 0.05, "r_bn": 0.01, "crop_floor": 0.5}

# digits: iteration counts and loops shrunk so that a whole run (distillation and evaluation) takes minutes on a CPU;
# image learning rates rescaled to digits' gradient sizes (measured at initialisation):
# - DM: the 128-d embedding gives losses ~500x smaller than 32x32 images: lr_img 10 (at 1 the images barely move);
# - DC/DSA: the gradient per pixel is ~2.5 on 64 pixels and the loss is rough (with a fixed network and real batch,
#   steps of lr_img 0.01 already increase it, 0.001 decrease it; the reference's 0.1 saturates the images within an
#   iteration): lr_img 0.001;
# - MTT: the image gradient is ~0.04 and the LR gradient ~100: lr_img 1, lr_lr 1e-7 (the reference's 100 and 1e-5
#   saturate the images and drive the learned LR negative).
_DIGITS_GRADMATCH = {"iterations": 10, "batch_real": 32, "lr_img": 0.001, "outer_loop": 5, "inner_loop": 5, "pool": 4,
                     "cond_epochs": 30}
_DIGITS_METHODS = {
    "dm": {"iterations": 200, "batch_real": 32, "lr_img": 10.0, "pool": 4, "cond_epochs": 30},
    "dc": _DIGITS_GRADMATCH,
    "dsa": _DIGITS_GRADMATCH,
    "mtt": {"iterations": 100, "syn_steps": 10, "max_start_epoch": 5, "expert_epochs": 2, "lr_img": 1.0,
            "lr_lr": 1e-7, "transition_epochs": 50},
}
# digits' full evaluation (2 protocols x 3 seeds x distilled + random real) must fit a CPU minute: IPC 10 on 2
# uncontended cores takes ~32 ms per hard epoch and ~39 ms per soft epoch, so 200 + 100 epochs keep the 12 students
# of a default evaluation near one minute (300 + 300 would take ~2.2 minutes).
_DIGITS_EVAL_EPOCHS = {"hard": 200, "soft": 100}


def _torchvision(cls_name: str) -> Loader:
    return partial(load_torchvision, cls_name)


# Digit classes are not mirror-symmetric: no horizontal flips (DC README), in squeeze, DELT and DSA alike.
# digits' mean/std: per pixel over its training split (pixels 0..16 rescaled to [0, 1]).
DATASET_SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("digits", load_digits_dataset, 1, 8, (0.3053,), (0.3758,), mirror_symmetric=False,
                presets=DatasetPresets(teacher_arch="convnet3-bn", teacher_epochs=20, delt=_SMALL_DELT,
                                       methods=_DIGITS_METHODS, eval_epochs=_DIGITS_EVAL_EPOCHS, buffer_batch=32)),
    DatasetSpec("fashion-mnist", load_fashion_mnist, 1, 28, (0.2860,), (0.3530,),
                presets=DatasetPresets(teacher_arch="convnet3-bn", teacher_epochs=10,
                                       delt={**_SMALL_DELT, "eval_protocols": "soft", "eval_epochs": 100})),
    DatasetSpec("mnist", _torchvision("MNIST"), 1, 28, (0.1307,), (0.3081,), mirror_symmetric=False,
                presets=DatasetPresets(teacher_arch="convnet3-bn", teacher_epochs=10, delt=_SMALL_DELT)),
    DatasetSpec("cifar10", _torchvision("CIFAR10"), 3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
                presets=DatasetPresets(teacher_epochs=100)),
    DatasetSpec("cifar100", _torchvision("CIFAR100"), 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                presets=DatasetPresets(teacher_epochs=100)),
    DatasetSpec("imagefolder", load_imagefolder, 3, 224, IMAGENET_MEAN, IMAGENET_STD,
                presets=DatasetPresets(teacher_epochs=60)),
)}


def dataset_spec(name: str) -> DatasetSpec:
    """The registered spec of ``name``."""
    if name not in DATASET_SPECS:
        raise FastDistillError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASET_SPECS))}")
    return DATASET_SPECS[name]


def dataset_presets(name: str) -> DatasetPresets:
    """The presets of ``name``; none (every layer's defaults) for a dataset built in memory, outside the registry."""
    return DATASET_SPECS[name].presets if name in DATASET_SPECS else DatasetPresets()


def mirror_symmetric(name: str) -> bool:
    """Whether horizontal flips keep ``name``'s classes (True for a dataset outside the registry)."""
    return DATASET_SPECS[name].mirror_symmetric if name in DATASET_SPECS else True


def default_teacher_arch(image_size: int) -> str:
    """ResNet-18 for a teacher without a preset: CIFAR stem up to :data:`CIFAR_STEM_MAX_SIZE` px, else torchvision's.

    At 224 px the CIFAR stem (no downsampling before layer1) would cost ~16x the FLOPs of the ImageNet stem.
    """
    return "resnet18-cifar" if image_size <= CIFAR_STEM_MAX_SIZE else "resnet18"


def teacher_arch_for(name: str, image_size: int | None = None) -> str:
    """``name``'s preset teacher, else :func:`default_teacher_arch` of ``image_size`` (default: the spec's size)."""
    arch = dataset_presets(name).teacher_arch
    if arch is not None:
        return arch
    if image_size is None:
        if name not in DATASET_SPECS:
            raise FastDistillError(f"{name!r} is not a registered dataset: give its image size (or a teacher "
                                   "architecture) to choose its default teacher")
        image_size = DATASET_SPECS[name].image_size
    return default_teacher_arch(image_size)
