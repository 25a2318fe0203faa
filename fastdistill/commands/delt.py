"""``python -m fastdistill delt``: DELT distillation end to end (teacher, selection, EarlyLate recover, evaluation)."""

from __future__ import annotations

import argparse

from fastdistill.commands._common import add_dataset_arguments, add_run_arguments, positive_int, resolve_device
from fastdistill.commands.rundir import args_to_dict, check_resume_config, prepare_run_dir, write_config
from fastdistill.data import load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.eval.harness import evaluate_distilled, write_results
from fastdistill.methods.delt.config import MODES, DELTConfig, validate
from fastdistill.methods.delt.selection import MODES as SELECTION_MODES
from fastdistill.pipelines.delt.pipeline import run_delt
from fastdistill.pipelines.outputs import load_distilled
from fastdistill.utils.seed import seed_everything

NAME = "delt"
HELP = "distil a dataset with DELT (BN-statistic matching from real images, EarlyLate rounds)"
SHAPING = ("dataset", "ipc", "iterations", "round_iterations", "min_iterations", "lr", "r_bn", "first_bn_multiplier",
           "jitter", "crop", "milestone", "crop_floor", "flip", "batch_size", "selection", "mode", "seed",
           "teacher_arch")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset_arguments(p)
    add_run_arguments(p)
    p.add_argument("--teacher", default=None, help="teacher folder from `squeeze` (default: train one into the run)")
    p.add_argument("--teacher-arch", default=None, help="architecture of the teacher trained when --teacher is absent")
    p.add_argument("--ipc", type=positive_int, default=None, help="images per class (default per dataset)")
    p.add_argument("--iterations", type=positive_int, default=None, help="iterations of the earliest images")
    p.add_argument("--round-iterations", type=positive_int, default=None, help="iterations per EarlyLate round")
    p.add_argument("--min-iterations", type=positive_int, default=None,
                   help="fewest iterations a class may get (rounds drawn per class; default = --iterations)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (cosine schedule)")
    p.add_argument("--r-bn", type=float, default=None, help="weight of the BN-statistic loss")
    p.add_argument("--first-bn-multiplier", type=float, default=None, help="extra weight of the first BN layer")
    p.add_argument("--jitter", type=int, default=None, help="random roll of up to J pixels per iteration")
    p.add_argument("--crop", choices=["cosine", "linear", "step", "none"], default=None, help="crop-scale curriculum")
    p.add_argument("--milestone", type=float, default=None, help="fraction of iterations the curriculum spans")
    p.add_argument("--crop-floor", type=float, default=None, help="smallest crop scale (0.08 in the paper)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips during recovery (default per dataset: off for digits/mnist)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per group (reference batch)")
    p.add_argument("--selection", choices=SELECTION_MODES, default=None, help="initial-image selection")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="fast (default; batched groups, per-group crops, PNG) or compat (reference behaviour)")
    p.add_argument("--groups-per-launch", type=int, default=None, help="groups optimised together (0 = auto)")
    p.add_argument("--backend", choices=["auto", "torch", "triton"], default=None, help="kernel backend")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    p.add_argument("--eval-seeds", type=positive_int, default=3, help="students per evaluated set")
    p.add_argument("--eval-epochs", type=positive_int, default=None,
                   help="student epochs (default per dataset and protocol)")
    p.add_argument("--eval-protocols", default=None,
                   help="comma-separated subset of hard,soft (default per dataset: hard,soft; fashion-mnist: soft)")


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    seed_everything(args.seed)
    cfg = DELTConfig.for_dataset(
        args.dataset, ipc=args.ipc, iterations=args.iterations, round_iterations=args.round_iterations,
        min_iterations=args.min_iterations, lr=args.lr, r_bn=args.r_bn, first_bn_multiplier=args.first_bn_multiplier,
        jitter=args.jitter, crop=args.crop, milestone=args.milestone, crop_floor=args.crop_floor, flip=args.flip,
        batch_size=args.batch_size, selection=args.selection, mode=args.mode, groups_per_launch=args.groups_per_launch,
        backend=args.backend, teacher_arch=args.teacher_arch, eval_protocols=args.eval_protocols,
        eval_epochs=args.eval_epochs, seed=args.seed, image_size=args.image_size)
    validate(cfg)
    ds = load_dataset(args.dataset, args.data_root, args.download, args.image_size)
    smallest = int(ds.train.counts(ds.info.num_classes).min())
    if cfg.ipc > smallest:
        raise FastDistillError(f"--ipc {cfg.ipc} is larger than the smallest class of {ds.info.name} ({smallest} "
                               f"training images); use --ipc {smallest} or fewer")
    run_dir = prepare_run_dir(args.output, f"delt-{args.dataset}", args.resume)
    teacher = args.teacher or str(run_dir / "teacher")  # without --teacher, one is trained into the run
    config = {**args_to_dict(args), **cfg.to_dict(), "teacher": teacher}
    if args.resume:
        check_resume_config(run_dir, config, SHAPING)
    write_config(run_dir, NAME, config, device)
    out = run_delt(ds, cfg, run_dir, device, teacher_path=args.teacher)
    s = out["summary"]
    saving = 100 * (1 - s["image_iterations"] / s["image_iterations_without_earlylate"])
    print(f"DELT: {s['images']} images ({cfg.ipc}/class) in {s['recover_seconds']:.0f}s of recovery, "
          f"{s['image_iterations']:,} image-iterations ({saving:.1f}% fewer than without EarlyLate) -> {run_dir}")
    if not args.no_eval:
        record = load_distilled(run_dir)
        protocols = [p.strip() for p in cfg.eval_protocols.split(",") if p.strip()]
        results = evaluate_distilled(record["images"], record["labels"], ds, teacher=out["teacher"],
                                     protocols=protocols, seeds=args.eval_seeds, base_seed=args.seed,
                                     epochs=cfg.eval_epochs, device=device)
        results["run"] = str(run_dir)
        write_results(run_dir, results)
    return 0
