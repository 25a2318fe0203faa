"""Options shared by the pipeline commands, and the device they name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fastdistill.commands._options import as_config, option, result_keys
from fastdistill.commands.rundir import check_resume_config, write_config
from fastdistill.data import DATASET_SPECS, Dataset, load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.models.reference_teachers import REFERENCE_FORMATS
from fastdistill.models.teacher import TEACHER_FORMATS, teacher_files, teacher_format
from fastdistill.models.torchvision_teacher import is_torchvision
from fastdistill.models.torchvision_teacher import weights_file as torchvision_weights
from fastdistill.utils import distributed
from fastdistill.utils.fingerprint import file_sha256


@dataclass(kw_only=True)
class AccessOptions:
    """How streamed (image-folder) data are read: decoding workers, the decoded cache, corrupt files."""

    workers: int | None = option(None, "DataLoader processes that decode images (default: the CPU count, at most 8; "
                                       "0: decode in the main process)", ge=0)
    cache_dir: str | None = option(None, "folder of decoded image caches (default: $FASTDISTILL_CACHE or "
                                         "~/.cache/fastdistill)")
    skip_corrupt: bool = option(False, "skip corrupt or unreadable image files (counted at the end) instead of "
                                       "stopping at the first")


@dataclass(kw_only=True)
class _WhichData:
    """Which dataset, and where it lives."""

    dataset: str = option("digits", "dataset", choices=lambda: sorted(DATASET_SPECS), shapes_result=True)
    data_root: str | None = option(None, "dataset location (IDX files, torchvision root, ImageFolder)",
                                   shapes_result=True)
    download: bool = option(False, "let torchvision download the dataset into --data-root")
    image_size: int | None = option(None, "resize+center-crop side for imagefolder data", ge=1, shapes_result=True)


@dataclass(kw_only=True)
class DataOptions(AccessOptions, _WhichData):
    """Which dataset, where it lives, and how it is read (the options come in that order)."""


@dataclass(kw_only=True)
class RunOptions(DataOptions):
    """Where a run writes, its seed and device, and whether it continues an interrupted run."""

    output: str | None = option(None, "output folder (default: a new folder under runs/)")
    seed: int = option(0, "random seed (same seed, same result on CPU)", shapes_result=True)
    device: str = option("auto", "compute device", choices=["auto", "cpu", "cuda"])
    resume: bool = option(False, "continue an interrupted run in --output", recorded=False)


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` -> a device; under torchrun ``cuda`` is this rank's ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise FastDistillError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
    return distributed.local_device(torch.device(name))


def record_run(run_dir: Path, command: str, options: RunOptions, device: torch.device,
               inputs: dict[str, str] | None = None, done: tuple[str, ...] = (), **extra: object) -> bool:
    """Write config.json, with ``inputs``: ``{name: fingerprint}`` of what the run reads (teacher, data, buffer, ...).

    On ``--resume`` first refuse options that shape the result, and inputs, that differ from the run's; then, if every
    file of ``done`` exists, say the run is complete and return True without writing anything.
    Under torchrun every rank checks, rank 0 alone writes, and all return the same answer.
    """
    config = as_config(options)
    inputs = inputs or {}

    def check() -> bool:
        if options.resume:
            check_resume_config(run_dir, config, result_keys(type(options)), inputs)
            if done and all((run_dir / name).exists() for name in done):
                print(f"{run_dir} is already complete ({', '.join(done)} written); nothing to do (use a new --output "
                      "to run it again)")
                return True
        return False

    if distributed.agree(check, broadcast=True):
        return True
    if distributed.is_main():
        write_config(run_dir, command, config, device, inputs=inputs, **extra)
    distributed.barrier()
    return False


def access_kwargs(options: AccessOptions) -> dict:
    """The ``load_dataset`` keywords of ``options``."""
    return {"workers": options.workers, "cache_dir": options.cache_dir, "skip_corrupt": options.skip_corrupt}


def load_run_dataset(options: RunOptions) -> Dataset:
    """The dataset ``options`` name. Under torchrun every rank loads it (rank 0 first when it may download), and a
    rank that cannot (a data root it does not see) stops every rank with its one-line error."""
    def load() -> Dataset:
        return load_dataset(options.dataset, options.data_root, options.download, options.image_size,
                            **access_kwargs(options))

    if not options.download:
        return distributed.agree(load)
    main = distributed.is_main()
    first = distributed.agree(load if main else lambda: None)
    later = distributed.agree(lambda: None if main else load())
    return first if main else later


def report_skipped(dataset: Dataset) -> None:
    """Say how many unreadable files ``--skip-corrupt`` skipped in this run, and name the first."""
    skipped = [path for split in (dataset.train, dataset.test) for path in getattr(split, "skipped", [])]
    if skipped:
        print(f"--skip-corrupt: skipped {len(skipped)} corrupt or unreadable image(s), the first: {skipped[0]}")


def data_fingerprint(dataset: Dataset) -> str:
    """What identifies the data: the imagefolder listing's fingerprint, or the built-in loader's name."""
    return dataset.fingerprint or f"built-in {dataset.info.name}"


def teacher_format_option() -> Any:
    """The ``--teacher-format`` field of a command that takes ``--teacher``."""
    return option(None, "how --teacher is stored: fastdistill (a `squeeze` folder; the default), torchvision (for "
                        "torchvision:NAME; the default there), rded (RDED/DELT .pth: ConvNet-D or "
                        "ResNet-18[-modified]), sre2l-cifar, sre2l-tiny (SRe2L's CIFAR / Tiny-ImageNet "
                        "ResNet-18-modified .pth)",
                  choices=TEACHER_FORMATS)


def teacher_fingerprint(teacher: str | None, run_dir: Path, weights: str | None = None, fmt: str | None = None
                        ) -> str:
    """sha256 of a teacher's weights (a reference checkpoint's: ``SHA (FORMAT)``, the format shapes the teacher); a
    teacher trained into the run (``RUN/teacher``) is ``trained into the run``."""
    if is_torchvision(teacher):
        return file_sha256(torchvision_weights(teacher, weights))
    if teacher is not None and teacher_format(teacher, fmt) in REFERENCE_FORMATS:
        if not Path(teacher).is_file():
            raise FastDistillError(f"teacher checkpoint {teacher} does not exist")
        return f"{file_sha256(Path(teacher))} ({fmt})"
    if teacher is None or Path(teacher).resolve() == (run_dir / "teacher").resolve():
        return "trained into the run"
    weights, _ = teacher_files(teacher)
    return file_sha256(weights)
