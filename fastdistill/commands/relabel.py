"""``python -m fastdistill relabel RUN_DIR --teacher T``: store the soft-label protocol's augmentation and the
teacher's logits, so that ``evaluate --soft-labels stored`` trains soft-label students without the teacher.

For the distilled set in ``RUN_DIR/distilled.pt`` and its seeded random real subsets (the harness's baseline), every
student seed, every epoch and every batch as the soft-label protocol draws it: the order, RandomResizedCrop boxes,
flips, CutMix boxes and partners, and the teacher's logits (float16), in ``RUN_DIR/relabel`` (or ``--output``).
The size is printed before anything is computed; chunks of epochs are written atomically and ``--resume`` continues
after the last finished chunk. The same seed gives the same labels (:mod:`fastdistill.eval.relabel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastdistill.commands._common import resolve_device
from fastdistill.commands._options import option
from fastdistill.data import load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.eval.harness import DEFAULT_STUDENTS
from fastdistill.eval.relabel import DEFAULT_CHUNK_EPOCHS, LOGITS_DTYPES, MANIFEST, relabel
from fastdistill.models.teacher import load_teacher, teacher_files
from fastdistill.models.torchvision_teacher import is_torchvision
from fastdistill.models.torchvision_teacher import weights_file as torchvision_weights
from fastdistill.pipelines.outputs import read_finished_run
from fastdistill.utils.fingerprint import file_sha256
from fastdistill.utils.lock import run_lock

NAME = "relabel"
FOLDER = "relabel"  # default output inside the run folder
HELP = "store soft labels (augmentation draws + teacher logits) so evaluate trains soft students without a teacher"


@dataclass(kw_only=True)
class Options:
    run_dir: str = option(None, "run folder holding distilled.pt", positional=True, required=True, metavar="RUN_DIR")
    teacher: str | None = option(None, "teacher folder or torchvision:NAME (default: the run's)")
    teacher_weights: str | None = option(None, "state-dict file of a torchvision:NAME teacher (default: the torch "
                                               "hub cache's)")
    seeds: int = option(3, "student seeds to store labels for (evaluate's --seeds)", ge=1)
    seed: int = option(0, "first seed (seeds are SEED, SEED+1, ...; evaluate's --seed)")
    epochs: int | None = option(None, "epochs (default: the soft protocol's, as evaluate)", ge=1)
    student: str = option(DEFAULT_STUDENTS["soft"], "student architecture (its batch-size rule; evaluate's "
                                                    "--student)")
    chunk_epochs: int = option(DEFAULT_CHUNK_EPOCHS, "epochs per file (the unit --resume keeps)", ge=1)
    logits_dtype: str = option("float16", "how teacher logits are stored", choices=list(LOGITS_DTYPES))
    output: str | None = option(None, f"folder for the stored labels (default: RUN_DIR/{FOLDER})")
    device: str = option("auto", "compute device", choices=["auto", "cpu", "cuda"])
    data_root: str | None = option(None, "dataset location if it needs one (default: the run's)")
    download: bool = option(False, "let torchvision download the dataset into --data-root")
    quiet: bool = option(False, "no progress bar")
    resume: bool = option(False, "finish an interrupted relabel in its folder", recorded=False)


def teacher_sha256(teacher: str, weights: str | None = None) -> str:
    """sha256 of a teacher's weight file (``squeeze`` folder or file, or a torchvision teacher's state dict)."""
    path = torchvision_weights(teacher, weights) if is_torchvision(teacher) else teacher_files(teacher)[0]
    return file_sha256(path)


def run(args: Options) -> int:
    run_dir = Path(args.run_dir)
    record, config = read_finished_run(run_dir)
    recorded = record["dataset"]
    teacher = args.teacher or config.get("teacher")
    if teacher is None:
        raise FastDistillError("relabel needs a teacher: pass --teacher DIR (a `fastdistill squeeze` output) or "
                               "torchvision:NAME")
    weights = args.teacher_weights or (None if args.teacher else config.get("teacher_weights"))
    output = Path(args.output) if args.output else run_dir / FOLDER
    if output.exists() and not output.is_dir():
        raise FastDistillError(f"--output {output} is a file; name a folder for the stored labels")
    if (output / MANIFEST).exists() and not args.resume:
        raise FastDistillError(f"{output} already holds stored labels; pass --resume to finish them or choose "
                               "another --output")
    if args.resume and not (output / MANIFEST).exists():
        raise FastDistillError(f"--resume: {output} holds no interrupted relabel ({MANIFEST}); drop --resume")
    device = resolve_device(args.device)
    dataset = load_dataset(recorded["name"], args.data_root or config.get("data_root"), args.download,
                           recorded.get("image_size"))
    if list(record["classes"]) != list(dataset.info.classes):
        raise FastDistillError(f"the distilled set's classes ({len(record['classes'])}) differ from "
                               f"{dataset.info.name}'s ({dataset.info.num_classes}); relabel on the dataset it was "
                               "distilled from")
    model, _ = load_teacher(teacher, dataset.info, device, weights)
    sha = teacher_sha256(teacher, weights)
    stage = record.get("stage")
    with run_lock(output):
        manifest = relabel(record["images"], record["labels"], dataset, model, output,
                seeds=[args.seed + i for i in range(args.seeds)], epochs=args.epochs, student=args.student,
                stages=stage if hasattr(stage, "shape") else None, chunk_epochs=args.chunk_epochs,
                logits_dtype=args.logits_dtype, device=device, teacher_name=str(teacher), teacher_sha256=sha,
                resume=args.resume, progress=not args.quiet)
    if manifest.get("already_complete"):
        return 0
    print(f"stored soft labels -> {output} (train from them: fastdistill evaluate {run_dir} --soft-labels "
          f"{'stored' if output == run_dir / FOLDER else output})")
    return 0
