"""``python -m fastdistill delt``: DELT distillation end to end (teacher, selection, EarlyLate recover, evaluation)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fastdistill.commands._common import (
    RunOptions,
    data_fingerprint,
    load_run_dataset,
    record_run,
    report_skipped,
    resolve_device,
    teacher_fingerprint,
    teacher_format_option,
)
from fastdistill.commands._options import as_config, option
from fastdistill.commands.rundir import prepare_run_dir
from fastdistill.errors import FastDistillError
from fastdistill.eval.harness import evaluate_distilled, write_results
from fastdistill.eval.protocols import NAMED_PROTOCOLS, PROTOCOLS, check_named_protocol, protocol_staging
from fastdistill.methods.delt.config import MODES, PRECISIONS, DELTConfig, validate
from fastdistill.methods.delt.selection import MODES as SELECTION_MODES
from fastdistill.models.teacher import teacher_format
from fastdistill.pipelines.delt.pipeline import run_delt
from fastdistill.pipelines.delt.teacher import check_teacher
from fastdistill.pipelines.outputs import load_distilled
from fastdistill.report import write_run_report
from fastdistill.utils import distributed
from fastdistill.utils.io import read_json
from fastdistill.utils.seed import seed_everything

NAME = "delt"
SUMMARY = "summary.json"  # written by run_delt once the images are saved
HELP = "distil a dataset with DELT (BN-statistic matching from real images, EarlyLate rounds)"


@dataclass(kw_only=True)
class Options(RunOptions):
    """DELT options; None takes the dataset's preset (pipelines/delt/config.py)."""

    teacher: str | None = option(None, "teacher folder from `squeeze`, torchvision:NAME, or a reference checkpoint "
                                       "(see --teacher-format) (default: train one into the run)")
    teacher_weights: str | None = option(None, "state-dict file of a torchvision:NAME teacher (default: the torch "
                                               "hub cache's)")
    teacher_format: str | None = teacher_format_option()
    teacher_arch: str | None = option(None, "architecture of the teacher trained when --teacher is absent",
                                      shapes_result=True)
    ipc: int | None = option(None, "images per class (default per dataset)", ge=1, shapes_result=True)
    iterations: int | None = option(None, "iterations of the earliest images", ge=1, shapes_result=True)
    round_iterations: int | None = option(None, "iterations per EarlyLate round", ge=1, shapes_result=True)
    min_iterations: int | None = option(
        None, "fewest iterations a class may get (rounds drawn per class; default = --iterations)", ge=1,
        shapes_result=True)
    lr: float | None = option(None, "Adam learning rate (cosine schedule)", gt=0, shapes_result=True)
    r_bn: float | None = option(None, "weight of the BN-statistic loss", ge=0, shapes_result=True)
    first_bn_multiplier: float | None = option(None, "extra weight of the first BN layer", ge=0, shapes_result=True)
    jitter: int | None = option(None, "random roll of up to J pixels per iteration", ge=0, shapes_result=True)
    crop: str | None = option(None, "crop-scale curriculum", choices=["cosine", "linear", "step", "none"],
                              shapes_result=True)
    milestone: float | None = option(None, "fraction of iterations the curriculum spans", ge=0, le=1,
                                     shapes_result=True)
    crop_floor: float | None = option(None, "smallest crop scale (0.08 in the paper)", gt=0, le=1, shapes_result=True)
    flip: bool | None = option(None, "random horizontal flips during recovery (default per dataset: off for "
                                     "digits/mnist)", shapes_result=True)
    batch_size: int | None = option(None, "images per group (reference batch)", ge=1, shapes_result=True)
    selection: str | None = option(None, "initial-image selection", choices=SELECTION_MODES, shapes_result=True)
    mode: str | None = option(None, "fast (default; batched groups, per-group crops, PNG) or compat (reference "
                                    "behaviour)", choices=MODES, shapes_result=True)
    groups_per_launch: int | None = option(None, "groups optimised together (0 = auto: as many as fit the device's "
                                                 "free memory, measured at the first iteration)", ge=0)
    precision: str = option("fp32", "teacher arithmetic in recover: fp32, or bf16 autocast (images, Adam state, BN "
                                    "statistics and losses stay fp32)", choices=list(PRECISIONS), shapes_result=True)
    channels_last: bool = option(False, "channels-last images and teacher weights in recover (faster convolutions "
                                        "on GPUs)")
    backend: str | None = option(None, "kernel backend", choices=["auto", "torch", "triton"])
    no_eval: bool = option(False, "skip the evaluation at the end")
    eval_seeds: int = option(3, "students per evaluated set", ge=1)
    eval_epochs: int | None = option(None, "student epochs (default per dataset and protocol)", ge=1)
    eval_protocols: str | None = option(
        None, "comma-separated subset of hard,soft (default per dataset: hard,soft; fashion-mnist: soft)")
    eval_protocol: str | None = option(None, "a named protocol for the evaluation instead of --eval-protocols (as "
                                             "evaluate --protocol)", choices=list(NAMED_PROTOCOLS))
    eval_lr: float | None = option(None, "student learning rate (default: the protocol's)", gt=0)
    eval_feature_model: str | None = option(None, "model whose penultimate features measure diversity: a teacher "
                                                  "folder, torchvision:NAME or pixels (default: the teacher)")


def delt_config(options: Options) -> DELTConfig:
    """The dataset's DELT preset with every option that names a DELTConfig field and is set."""
    names = {f.name for f in dataclasses.fields(DELTConfig)} - {"dataset"}
    settings = {k: v for k, v in as_config(options).items() if k in names}
    return DELTConfig.for_dataset(options.dataset, image_size=options.image_size, **settings)


def run(options: Options) -> int:
    device = resolve_device(options.device)
    seed_everything(options.seed)
    cfg = delt_config(options)
    validate(cfg)
    protocols = [p.strip() for p in cfg.eval_protocols.split(",") if p.strip()]
    if not options.no_eval and (not protocols or any(p not in PROTOCOLS for p in protocols)):
        raise FastDistillError(f"--eval-protocols takes a comma-separated subset of {','.join(PROTOCOLS)}, got "
                               f"{cfg.eval_protocols!r}")
    if not options.no_eval and options.eval_protocol is not None:
        if options.eval_protocols is not None:
            raise FastDistillError("pass either --eval-protocol NAME or --eval-protocols hard,soft, not both")
        check_named_protocol(options.eval_protocol, True, options.eval_lr is not None)  # DELT always has a teacher
    fmt = teacher_format(options.teacher, options.teacher_format)
    ds = load_run_dataset(options)

    def check_inputs() -> tuple:  # under torchrun every rank checks; one failing stops all with one line
        smallest = int(ds.train.counts(ds.info.num_classes).min())
        if cfg.ipc > smallest:
            raise FastDistillError(f"--ipc {cfg.ipc} is larger than the smallest class of {ds.info.name} ({smallest} "
                                   f"training images); use --ipc {smallest} or fewer")
        return (check_teacher(ds, options.teacher, device, options.teacher_weights, options.teacher_format)
                if options.teacher else (None, {}))

    given, meta = distributed.agree(check_inputs)
    run_dir = prepare_run_dir(options.output, f"delt-{options.dataset}", options.resume)
    teacher = options.teacher or str(run_dir / "teacher")  # without --teacher, one is trained into the run
    inputs = {"teacher": teacher_fingerprint(options.teacher, run_dir, options.teacher_weights,
                                             options.teacher_format),
              "data": data_fingerprint(ds)}
    done = (SUMMARY,) if options.no_eval else (SUMMARY, "results.json")
    if record_run(run_dir, NAME, options, device, inputs=inputs, done=done,
                  resolved={**cfg.to_dict(), "teacher": teacher, "teacher_format": fmt,
                            "teacher_classes": meta.get("classes")}):
        return 0
    if options.resume and (run_dir / SUMMARY).exists():  # distilled earlier; only the evaluation is left
        print(f"{run_dir}: distillation already complete ({SUMMARY} kept); evaluating")
        eval_teacher = given if given is not None else read_json(run_dir / SUMMARY)["teacher"]
    else:
        out = run_delt(ds, cfg, run_dir, device, teacher_path=options.teacher, teacher=given)
        s, eval_teacher = out["summary"], out["teacher"]
        if s is not None:  # rank 0
            saving = 100 * (1 - s["image_iterations"] / s["image_iterations_without_earlylate"])
            print(f"DELT: {s['images']} images ({cfg.ipc}/class) in {s['recover_seconds']:.0f}s of recovery, "
                  f"{s['image_iterations']:,} image-iterations ({saving:.1f}% fewer than without EarlyLate) -> "
                  f"{run_dir}")
    if not distributed.is_main():  # rank 0 evaluates and writes the report
        return 0
    if not options.no_eval:
        record = load_distilled(run_dir)
        named = options.eval_protocol
        stages, stage_lrs = (None, None) if named is None else \
            protocol_staging(named, int(record["labels"].numel()), None, None, options.eval_lr is not None)
        results = evaluate_distilled(record["images"], record["labels"], ds, teacher=eval_teacher,
                                     protocols=protocols, seeds=options.eval_seeds, base_seed=options.seed,
                                     epochs=cfg.eval_epochs if named is None else options.eval_epochs,
                                     device=device, lr=options.eval_lr, feature_model=options.eval_feature_model,
                                     full_data="cached", protocol=named, stages=stages, stage_lrs=stage_lrs)
        results["run"] = str(run_dir)
        write_results(run_dir, results)
    report_skipped(ds)
    write_run_report(run_dir)
    return 0
