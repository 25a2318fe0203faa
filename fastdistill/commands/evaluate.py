"""``python -m fastdistill evaluate RUN_DIR``: train students on a run's distilled set and on random real subsets.

Reads ``RUN_DIR/distilled.pt`` and the dataset recorded in it, trains students under the hard-label (DC) and
soft-label (RDED/DELT) protocols (``--students`` for several architectures in one table) and writes
``RUN_DIR/results.json`` with the diversity of the distilled and random sets and DD-Ranking's scores. The teacher
defaults to the ``teacher`` path in ``RUN_DIR/config.json``; without one the soft protocol is skipped with a note
unless it was asked for explicitly.
A ``stage`` tensor in ``distilled.pt`` (stage index per image, PDD) makes the evaluation progressive, with the
per-stage learning rates of ``eval_lr`` (if recorded) for the hard protocol on the distilled set. Every finished
student's result is kept in ``RUN_DIR/progress/evaluate``; ``--resume`` reuses them after an interruption.
``--soft-labels stored`` trains the soft-label students from the labels ``relabel`` stored, without the teacher.
``--protocol NAME`` trains under a paper's named protocol instead (:data:`fastdistill.eval.protocols.NAMED_PROTOCOLS`:
its label kind, augmentation, epochs, optimizer, batch rule, schedule, best-of or final); ``pdd`` evaluates a staged
run progressively with its learned per-stage rates, ``mtt`` uses the run's learned rate, the others the whole set.
``--whole-set`` ignores the stages (one set, the protocol's rate).
Under torchrun the students are dealt to the ranks and rank 0 writes the gathered table (the same as one process's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fastdistill.commands._common import (
    AccessOptions,
    access_kwargs,
    report_skipped,
    resolve_device,
    teacher_format_option,
)
from fastdistill.commands._options import as_config, option
from fastdistill.commands.relabel import FOLDER as RELABEL_FOLDER
from fastdistill.commands.relabel import teacher_sha256
from fastdistill.data import load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.eval.ddranking import CACHE_ENV, FULL_DATA_MODES
from fastdistill.eval.harness import evaluate_distilled, write_results
from fastdistill.eval.protocols import NAMED_PROTOCOLS, PROTOCOLS, protocol_staging
from fastdistill.eval.relabel import StoredLabels
from fastdistill.eval.students import parse_students
from fastdistill.models.teacher import teacher_format
from fastdistill.models.torchvision_teacher import is_torchvision
from fastdistill.models.torchvision_teacher import weights_file as torchvision_weights
from fastdistill.pipelines.outputs import read_finished_run
from fastdistill.report import write_run_report
from fastdistill.utils import distributed

NAME = "evaluate"
KEEP = "progress/evaluate"  # one JSON per finished student
HELP = "train students on a distilled set and on a random real subset (hard and soft labels); write results.json"


@dataclass(kw_only=True)
class Options(AccessOptions):
    run_dir: str = option(None, "run folder holding distilled.pt", positional=True, required=True, metavar="RUN_DIR")
    teacher: str | None = option(None, "teacher folder, torchvision:NAME or a reference checkpoint for the soft "
                                       "protocol (default: the run's)")
    teacher_weights: str | None = option(None, "state-dict file of a torchvision:NAME teacher (default: the torch "
                                               "hub cache's)")
    teacher_format: str | None = teacher_format_option()
    protocols: str | None = option(None, f"comma-separated subset of {','.join(PROTOCOLS)} (default: both; soft "
                                         "needs a teacher)")
    protocol: str | None = option(None, "a paper's named protocol instead of --protocols: label kind, augmentation, "
                                        "epochs, optimizer, batch rule, LR schedule, best-of or final (README: "
                                        "Evaluation)", choices=list(NAMED_PROTOCOLS))
    seeds: int = option(3, "students per protocol and set", ge=1)
    seed: int = option(0, "first seed (seeds are SEED, SEED+1, ...)")
    epochs: int | None = option(None, "epochs per student (default: 300, fewer for tiny datasets, see the README; "
                                      "with --protocol its paper's)", ge=1)
    lr: float | None = option(None, "student learning rate for every student (default: the reference's for "
                                    "each architecture, else the protocol's)", gt=0)
    student: str | None = option(None, "student architecture for every protocol (default: convnet3 hard, "
                                       "convnet3-bn soft)")
    students: str | None = option(None, "comma-separated architectures, each under every protocol, in one table "
                                        "(e.g. convnet3,convnet4-bn,resnet18-cifar)")
    feature_model: str | None = option(None, "model whose penultimate features measure diversity: a teacher folder, "
                                             "torchvision:NAME or pixels (default: the teacher)")
    feature_weights: str | None = option(None, "state-dict file of a torchvision:NAME feature model (default: the "
                                               "torch hub cache's)")
    full_data: str = option("train", "full-data hard-label accuracy for DD-Ranking's HLR/LRS: train once and cache, "
                                     "use the cache only, or skip", choices=list(FULL_DATA_MODES))
    full_data_epochs: int | None = option(None, "epochs of the full-data student (default: the hard protocol's)",
                                          ge=1)
    full_data_accuracy: str | None = option(None, "known full-data hard-label accuracies (%) for HLR/LRS instead of "
                                                  "training, e.g. convnet3=90.42,convnet3-bn=90.02 (a paper's or an "
                                                  "earlier run's; recorded as given)", metavar="ARCH=TOP1,...")
    cache_dir: str | None = option(None, f"cache of full-data accuracies (default: ${CACHE_ENV} or "
                                         "~/.cache/fastdistill)")
    ars: bool = option(False, "also train every student without augmentation, for DD-Ranking's ARS")
    whole_set: bool = option(False, "train on the whole set at once even when the run has stages (PDD), as every "
                                    "other set is trained")
    track_best: int = option(0, "also evaluate ~K times per run and report the best (labelled; 0: final only)", ge=0,
                             metavar="K")
    batch_students: str = option("auto", "train each (protocol, architecture)'s ConvNet students together as one "
                                         "stacked network (equal to one by one up to float rounding); auto: on "
                                         "CUDA only", choices=["auto", "on", "off"])
    device: str = option("auto", "compute device", choices=["auto", "cpu", "cuda"])
    data_root: str | None = option(None, "dataset location if it needs one (default: the run's)")
    download: bool = option(False, "let torchvision download the dataset into --data-root")
    quiet: bool = option(False, "no progress bars or per-run lines")
    soft_labels: str = option("live", "soft labels from the teacher (live), from `relabel` (stored: RUN_DIR/relabel), "
                                      "or from a relabel --output folder", metavar="live|stored|DIR")
    resume: bool = option(False, f"reuse the students an interrupted evaluation finished (RUN_DIR/{KEEP})",
                          recorded=False)


def _parse_protocols(text: str | None) -> tuple[tuple[str, ...], bool]:
    if text is None:
        return PROTOCOLS, False
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    bad = [n for n in names if n not in PROTOCOLS]
    if bad or not names:
        raise FastDistillError(f"--protocols takes a comma-separated subset of {','.join(PROTOCOLS)}, got {text!r}")
    return names, True


def _given_accuracies(text: str | None) -> dict[str, float] | None:
    """``"convnet3=90.42,convnet3-bn=90.02"`` -> ``{"convnet3": 90.42, ...}`` (None for None)."""
    if text is None:
        return None
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        arch, _, value = item.partition("=")
        try:
            top1 = float(value)
        except ValueError:
            top1 = -1.0
        if not arch.strip() or not 0 <= top1 <= 100:
            raise FastDistillError(f"--full-data-accuracy takes ARCH=TOP1 pairs with TOP1 in percent (0-100), "
                                   f"e.g. convnet3=90.42; got {item!r}")
        out[arch.strip()] = top1
    return out


def _teacher_missing(teacher: str | None, weights: str | None) -> str | None:
    """Why ``teacher`` cannot be loaded (None when it can be tried)."""
    if teacher is None:
        return "no teacher (pass --teacher DIR)"
    if is_torchvision(teacher):
        try:
            torchvision_weights(teacher, weights)
        except FastDistillError as exc:
            return str(exc)
    elif not Path(teacher).exists():
        return f"the run's teacher {teacher} is missing (pass --teacher DIR)"
    return None


def _stored_labels(args: Options, run_dir: Path, teacher: str | None, weights: str | None) -> StoredLabels | None:
    """The ``--soft-labels`` folder, refused when made with another teacher than the one given (or the run's)."""
    if args.soft_labels == "live":
        return None
    stored = StoredLabels(run_dir / RELABEL_FOLDER if args.soft_labels == "stored" else args.soft_labels)
    known = args.teacher is not None or (teacher is not None and not is_torchvision(teacher) and Path(teacher).exists())
    if known and teacher_sha256(teacher, weights) != stored.teacher_sha256:
        raise FastDistillError(f"the stored soft labels in {stored.folder} were made with another teacher "
                               f"({stored.manifest['teacher']}), not {teacher}; relabel with {teacher} or drop "
                               "--teacher")
    return stored


def run(args: Options) -> int:
    run_dir = Path(args.run_dir)
    record, config = read_finished_run(run_dir)
    recorded = record["dataset"]
    protocols, explicit = _parse_protocols(args.protocols)
    if args.protocol is not None:
        if args.protocols is not None:
            raise FastDistillError("pass either --protocol NAME (a named recipe) or --protocols hard,soft, not both")
        protocols, explicit = (NAMED_PROTOCOLS[args.protocol],), True
    students = parse_students(args.students)
    given = _given_accuracies(args.full_data_accuracy)
    if students and args.student:
        raise FastDistillError("pass either --student or --students, not both")
    device = resolve_device(args.device)

    dataset = load_dataset(recorded["name"], args.data_root or config.get("data_root"), args.download,
                           recorded.get("image_size"), **access_kwargs(args))
    if list(record["classes"]) != list(dataset.info.classes):
        raise FastDistillError(f"the distilled set's classes ({len(record['classes'])}) differ from {dataset.info.name}"
                               f"'s ({dataset.info.num_classes}) in number, names or order; evaluate on the dataset "
                               "it was distilled from")

    skipped: dict[str, str] = {}
    teacher = args.teacher or config.get("teacher")
    weights = args.teacher_weights or (None if args.teacher else config.get("teacher_weights"))
    fmt = args.teacher_format or (None if args.teacher else config.get("teacher_format"))
    fmt = teacher_format(teacher, fmt)
    stored = _stored_labels(args, run_dir, teacher, weights) if "soft" in protocols else None
    reason = _teacher_missing(teacher, weights)
    if reason and "soft" in protocols and not explicit and stored is None:
        protocols = tuple(p for p in protocols if p != "soft")
        skipped["soft"] = reason
        print(f"note: soft-label protocol skipped: {reason}")
    if reason:  # a teacher that cannot be loaded gives neither live soft labels nor diversity features
        teacher = weights = None

    stage = record.get("stage") if isinstance(record.get("stage"), torch.Tensor) and not args.whole_set else None
    stage_lrs = record.get("eval_lr") if stage is not None else None
    if args.protocol is not None:
        stage, stage_lrs = protocol_staging(args.protocol, int(record["labels"].numel()), stage,
                                            record.get("eval_lr"), args.lr is not None)
    results = evaluate_distilled(record["images"], record["labels"], dataset, teacher=teacher, stored_labels=stored,
                                 protocols=protocols, seeds=args.seeds, base_seed=args.seed, epochs=args.epochs,
                                 student=args.student, students=students, device=device, stages=stage,
                                 stage_lrs=list(stage_lrs) if stage_lrs else None, track_best=args.track_best,
                                 lr=args.lr, progress=not args.quiet, keep=run_dir / KEEP, reuse=args.resume,
                                 teacher_weights=weights, teacher_format=fmt, feature_model=args.feature_model,
                                 feature_weights=args.feature_weights, full_data=args.full_data,
                                 full_data_epochs=args.full_data_epochs, cache_dir=args.cache_dir, ars=args.ars,
                                 full_data_top1=given,
                                 protocol=args.protocol, all_ranks=True,
                                 batch_students=None if args.batch_students == "auto" else args.batch_students == "on")
    results["run"] = str(run_dir)
    results["options"] = as_config(args)
    if skipped:
        results["skipped"] = {**skipped, **results.get("skipped", {})}
    if not distributed.is_main():  # every rank holds the same table; rank 0 writes it
        return 0
    path = write_results(run_dir, results)
    print(f"results -> {path}")
    report_skipped(dataset)
    write_run_report(run_dir)
    return 0
