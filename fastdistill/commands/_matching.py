"""Options and driver shared by ``distill`` (one stage) and ``pdd`` (progressive stages).

Under torchrun DM, DC and DSA divide their classes (and PDD's network pool) over the ranks and give the bytes of one
process; MTT divides every unrolled step's minibatch (and PDD's experts) and equals one process up to float rounding;
rank 0 writes the outputs; the evaluation's students are dealt to the ranks.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from fastdistill.commands._common import (
    RunOptions,
    access_kwargs,
    data_fingerprint,
    record_run,
    report_skipped,
    resolve_device,
    teacher_fingerprint,
)
from fastdistill.commands._options import as_config, option
from fastdistill.commands.rundir import prepare_run_dir
from fastdistill.data import load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.eval.diversity import load_feature_model
from fastdistill.eval.harness import NO_FEATURE_MODEL, diversity_lines, measure_diversity
from fastdistill.eval.progressive import evaluate_progressive, format_rows
from fastdistill.methods import RealData, build_method
from fastdistill.methods.buffer import TRAJECTORIES, check_buffer_folder
from fastdistill.methods.config import MethodConfig
from fastdistill.methods.presets import resolve
from fastdistill.models.teacher import teacher_format
from fastdistill.pipelines.delt.teacher import check_teacher
from fastdistill.pipelines.pdd.engine import ProgressiveRun
from fastdistill.report import write_run_report
from fastdistill.utils import distributed
from fastdistill.utils.fingerprint import file_sha256
from fastdistill.utils.io import write_json
from fastdistill.utils.seed import generator

_PRESET = " (default: preset)"


@dataclass(kw_only=True)
class MatchingOptions(RunOptions):
    """Options of the matching methods; a setting left None takes the method's preset (methods/presets.py)."""

    ipc: int = option(10, "images per class in total", ge=1, shapes_result=True)
    iterations: int | None = option(None, "outer iterations per stage" + _PRESET, ge=1, shapes_result=True)
    arch: str | None = option(None, "matching network (convnet3 = ConvNet-3 instance norm)" + _PRESET,
                              shapes_result=True)
    init: str | None = option(None, "initial images" + _PRESET, choices=["real", "noise"], shapes_result=True)
    lr_img: float | None = option(None, "image learning rate (SGD, momentum 0.5)" + _PRESET, gt=0, shapes_result=True)
    batch_real: int | None = option(None, "real images per class per matching step (DM, DC, DSA)" + _PRESET, ge=1,
                                    shapes_result=True)
    pool: int | None = option(None, "PDD: networks conditioned on the union for DM/DC/DSA (0: random networks)"
                              + _PRESET, ge=0, shapes_result=True)
    cond_epochs: int | None = option(None, "PDD: epochs the pool trains on each union" + _PRESET, ge=1,
                                     shapes_result=True)
    outer_loop: int | None = option(None, "DC/DSA: image steps per iteration" + _PRESET, ge=1, shapes_result=True)
    inner_loop: int | None = option(None, "DC/DSA: network epochs on the synthetic set between image steps" + _PRESET,
                                    ge=1, shapes_result=True)
    buffer: str | None = option(None, "MTT: expert buffer folder (python -m fastdistill buffer)", shapes_result=True)
    syn_steps: int | None = option(None, "MTT: unrolled student steps N" + _PRESET, ge=1, shapes_result=True)
    expert_epochs: int | None = option(None, "MTT: target epochs ahead M" + _PRESET, ge=1, shapes_result=True)
    max_start_epoch: int | None = option(None, "MTT: start epochs drawn from [0, T)" + _PRESET, ge=1,
                                         shapes_result=True)
    lr_lr: float | None = option(None, "MTT: learning rate of the learnable student LR" + _PRESET, ge=0,
                                 shapes_result=True)
    lr_teacher: float | None = option(None, "MTT: initial student LR (and expert LR on real data)" + _PRESET, gt=0,
                                      shapes_result=True)
    batch_syn: int | None = option(None, "MTT: images per unrolled step (default: the whole union)", ge=1,
                                   shapes_result=True)
    transition_epochs: int | None = option(None, "PDD+MTT: epochs each expert trains on the union" + _PRESET, ge=1,
                                           shapes_result=True)
    memory: str | None = option(None, "MTT meta-gradient: full (keep the unrolled graph) | lean (recompute one step "
                                      "at a time)" + _PRESET, choices=["full", "lean"], shapes_result=True)
    experts_parallel: int | None = option(None, "networks trained at once in one vmapped step" + _PRESET, ge=1,
                                          shapes_result=True)
    checkpoint_every: int | None = option(None, "iterations between checkpoints" + _PRESET, ge=1,
                                          shapes_result=True)
    no_dsa: bool = option(False, "DM/DSA/MTT without differentiable siamese augmentation", shapes_result=True)
    no_eval: bool = option(False, "skip the evaluation at the end")
    eval_seeds: int = option(3, "students per evaluated set", ge=1)
    eval_epochs: int | None = option(None, "epochs per stage of the hard-label protocol (default: the harness's)",
                                     ge=1)
    eval_arch: str = option("convnet3", "student architecture")
    eval_lr: float | None = option(None, "student learning rate (default: the protocol's)", gt=0)
    eval_feature_model: str | None = option(None, "model whose penultimate features measure diversity: a teacher "
                                                  "folder, torchvision:NAME or pixels (default: --teacher if any)")
    quiet: bool = option(False, "no progress bars")


_SETTINGS = {f.name for f in dataclasses.fields(MethodConfig)} - {"method", "ipc", "stages"}
_DISTRIBUTED = ("dm", "dc", "dsa", "mtt")  # the methods that divide their work over torchrun's ranks


def _check_world(method: str) -> None:
    """Refuse, with one line, a method that does not divide its work over several processes (no duplicate work)."""
    size = distributed.world().size
    if size > 1 and method not in _DISTRIBUTED:
        raise distributed.AgreedError(f"{method} does not divide its work over several processes yet "
                                      f"({', '.join(_DISTRIBUTED)} do); run it as one process (without torchrun, "
                                      "or --nproc-per-node 1)")


def run_matching(args: MatchingOptions, command: str, method: str, stages: int) -> int:
    overrides = {k: v for k, v in as_config(args).items() if k in _SETTINGS}
    if args.no_dsa:
        overrides["dsa"] = False
    if method != "delt" and getattr(args, "teacher_format", None) is not None:
        raise FastDistillError(f"--teacher-format is for the teacher of --base delt, not --base {method}")
    if method == "delt" and getattr(args, "teacher", None) is None:
        raise FastDistillError("--base delt needs a teacher: pass --teacher DIR (train one with "
                               f"`python -m fastdistill squeeze --dataset {args.dataset} --output DIR`)")
    cfg = resolve(method, args.dataset, args.ipc, stages, overrides)
    _check_world(method)
    inputs = {}
    if method == "mtt":
        inputs["buffer"] = file_sha256(check_buffer_folder(cfg.buffer, args.dataset, cfg.arch) / TRAJECTORIES)
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset, args.data_root, args.download, args.image_size, **access_kwargs(args))
    inputs["data"] = data_fingerprint(dataset)
    data = RealData(dataset.train, dataset.info, device)
    gen = generator(args.seed, device)
    teacher, teacher_record = None, {}
    if method == "delt":
        teacher, meta = check_teacher(dataset, args.teacher, device, args.teacher_weights, args.teacher_format)
        teacher_record = {"teacher_format": teacher_format(args.teacher, args.teacher_format),
                          "teacher_classes": meta.get("classes")}
    base = build_method(cfg, data, gen, dataset=dataset, teacher=teacher, seed=args.seed)
    run_dir = prepare_run_dir(args.output, command, args.resume)
    if method == "delt":
        inputs["teacher"] = teacher_fingerprint(args.teacher, run_dir, args.teacher_weights, args.teacher_format)
    done = ("distilled.pt",) if args.no_eval else ("distilled.pt", "results.json")
    if record_run(run_dir, command, args, device, inputs=inputs, done=done,
                  resolved={**cfg.to_dict(), **teacher_record}):
        return 0
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
        if distributed.is_main():
            report_skipped(dataset)
            write_run_report(run_dir)
        return 0
    rows, raw = evaluate_progressive(record, dataset, seeds=args.eval_seeds, epochs=args.eval_epochs,
                                     arch=args.eval_arch, device=device, progress=not args.quiet,
                                     lr=args.eval_lr, all_ranks=True)
    if not distributed.is_main():  # rank 0 measures the diversity and writes the results
        return 0
    results = {"protocol": "hard", "arch": args.eval_arch, "seeds": args.eval_seeds,
               "rows": [r.to_dict() for r in rows], "harness": raw}
    feature_model = args.eval_feature_model or getattr(args, "teacher", None)
    if feature_model is not None:
        extractor = load_feature_model(feature_model, dataset.info, device, None if args.eval_feature_model
                                       else getattr(args, "teacher_weights", None))
        results["diversity"] = measure_diversity(record["images"], record["labels"], dataset, extractor,
                                                 range(args.eval_seeds))
    else:
        results["skipped"] = {"diversity": NO_FEATURE_MODEL}
    write_json(run_dir / "results.json", results)
    print("\n" + format_rows(rows))
    print("\n".join(diversity_lines(results["diversity"])) if "diversity" in results else
          f"diversity: skipped ({NO_FEATURE_MODEL})")
    report_skipped(dataset)
    write_run_report(run_dir)
    return 0
