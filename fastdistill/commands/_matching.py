"""Arguments and driver shared by ``distill`` (one stage) and ``pdd`` (progressive stages)."""

from __future__ import annotations

import argparse
import time

from fastdistill.commands._common import add_dataset_arguments, add_run_arguments, positive_int, resolve_device
from fastdistill.commands.rundir import args_to_dict, check_resume_config, prepare_run_dir, write_config
from fastdistill.data import load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.eval.progressive import evaluate_progressive, format_rows
from fastdistill.methods import RealData, build_method
from fastdistill.methods.buffer import check_buffer_folder
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.presets import resolve
from fastdistill.pipelines.delt.teacher import obtain_teacher
from fastdistill.pipelines.pdd.engine import ProgressiveRun
from fastdistill.utils.io import write_json
from fastdistill.utils.seed import generator


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


# Flags that map onto MethodConfig fields (None = take the preset).
_SETTINGS: list[tuple[str, type, str]] = [
    ("iterations", positive_int, "outer iterations per stage"),
    ("arch", str, "matching network (convnet3 = ConvNet-3 instance norm)"),
    ("init", str, "initial images: real | noise"),
    ("lr_img", float, "image learning rate (SGD, momentum 0.5)"),
    ("batch_real", positive_int, "real images per class per matching step (DM, DC, DSA)"),
    ("pool", non_negative_int, "PDD: networks conditioned on the union for DM/DC/DSA (0: random networks)"),
    ("cond_epochs", positive_int, "PDD: epochs the pool trains on each union"),
    ("outer_loop", positive_int, "DC/DSA: image steps per iteration"),
    ("inner_loop", positive_int, "DC/DSA: network epochs on the synthetic set between image steps"),
    ("buffer", str, "MTT: expert buffer folder (python -m fastdistill buffer)"),
    ("syn_steps", positive_int, "MTT: unrolled student steps N"),
    ("expert_epochs", positive_int, "MTT: target epochs ahead M"),
    ("max_start_epoch", positive_int, "MTT: start epochs drawn from [0, T)"),
    ("lr_lr", float, "MTT: learning rate of the learnable student LR"),
    ("lr_teacher", float, "MTT: initial student LR (and expert LR on real data)"),
    ("batch_syn", positive_int, "MTT: images per unrolled step (default: the whole union)"),
    ("transition_epochs", positive_int, "PDD+MTT: epochs each expert trains on the union"),
    ("memory", str, "MTT meta-gradient: full (keep the unrolled graph) | lean (recompute one step at a time)"),
    ("experts_parallel", positive_int, "networks trained at once in one vmapped step"),
    ("checkpoint_every", positive_int, "iterations between checkpoints"),
]
RESULT_KEYS = ("method", "dataset", "data_root", "ipc", "stages", "seed", "settings")


def add_matching_arguments(p: argparse.ArgumentParser, stages_default: int | None) -> None:
    add_dataset_arguments(p)
    add_run_arguments(p)
    p.add_argument("--ipc", type=positive_int, default=10, help="images per class in total (default 10)")
    if stages_default is not None:
        p.add_argument("--stages", type=positive_int, default=stages_default,
                       help=f"progressive stages P; each adds ipc/P images per class (default {stages_default})")
    for name, kind, text in _SETTINGS:
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text + " (default: preset)")
    p.add_argument("--no-dsa", action="store_true", help="DM/DSA/MTT without differentiable siamese augmentation")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    p.add_argument("--eval-seeds", type=positive_int, default=3, help="students per evaluated set (default 3)")
    p.add_argument("--eval-epochs", type=positive_int, default=None,
                   help="epochs per stage of the hard-label protocol (default: the harness's)")
    p.add_argument("--eval-arch", default="convnet3", help="student architecture (default convnet3)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_matching(args: argparse.Namespace, command: str, method: str, stages: int) -> int:
    overrides = {name: getattr(args, name) for name, _, _ in _SETTINGS}
    if args.no_dsa:
        overrides["dsa"] = False
    if method == "delt" and getattr(args, "teacher", None) is None:
        raise FastDistillError("--base delt needs a teacher: pass --teacher DIR (train one with "
                               f"`python -m fastdistill squeeze --dataset {args.dataset} --output DIR`)")
    cfg = resolve(method, args.dataset, args.ipc, stages, overrides)
    if method == "mtt":
        check_buffer_folder(cfg.buffer, args.dataset, cfg.arch)
    device = resolve_device(args.device)
    run_dir = prepare_run_dir(args.output, command, args.resume)
    config = {**args_to_dict(args), "method": method, "stages": stages, "settings": cfg.to_dict()}
    if args.resume:
        check_resume_config(run_dir, config, RESULT_KEYS)
    else:
        write_config(run_dir, command, config, device)
    dataset = load_dataset(args.dataset, args.data_root, args.download, args.image_size)
    data = RealData(dataset.train, dataset.info, device)
    gen = generator(args.seed, device)
    teacher = None
    if method == "delt":
        teacher, _ = obtain_teacher(dataset, args.teacher, run_dir, DELTConfig.for_dataset(args.dataset), device)
    base = build_method(cfg, data, gen, dataset=dataset, teacher=teacher, seed=args.seed)
    runner = ProgressiveRun(base, data, cfg, run_dir, gen, progress=not args.quiet)
    if args.resume and runner.load_checkpoint():
        print(f"resuming {run_dir}: stage {runner.stage}, {runner.phase}, iteration {runner.iteration}")
    started = time.perf_counter()
    record = runner.run()
    print(f"\n{method.upper()}{' + PDD' if stages > 1 else ''}: {dataset.info.name}, IPC {cfg.ipc}, {stages} "
          f"stage(s), {cfg.iterations} iterations each ({time.perf_counter() - started:.0f} s this session)")
    print(f"{'stage':>5}  {'iters':>6}  {'first loss':>11}  {'last loss':>11}  {'seconds':>8}  {'eval lr':>8}")
    for r in runner.records:
        lr = "-" if r.eval_lr is None else f"{r.eval_lr:.4g}"
        print(f"{r.stage:>5}  {r.iterations:>6}  {r.first_loss:>11.4g}  {r.last_loss:>11.4g}  {r.seconds:>8.1f}  "
              f"{lr:>8}")
    print(f"outputs: {run_dir}")
    if args.no_eval:
        return 0
    rows, raw = evaluate_progressive(record, dataset, seeds=args.eval_seeds, epochs=args.eval_epochs,
                                     arch=args.eval_arch, device=device, progress=not args.quiet)
    write_json(run_dir / "results.json", {"protocol": "hard", "arch": args.eval_arch, "seeds": args.eval_seeds,
                                          "rows": [r.to_dict() for r in rows], "harness": raw})
    print("\n" + format_rows(rows))
    return 0
