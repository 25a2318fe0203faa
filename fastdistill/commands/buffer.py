"""``python -m fastdistill buffer``: train MTT expert trajectories on real data."""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastdistill.augment.dsa import DSAConfig, dsa_strategy_for
from fastdistill.commands._common import (
    RunOptions,
    access_kwargs,
    data_fingerprint,
    record_run,
    report_skipped,
    resolve_device,
)
from fastdistill.commands._options import option
from fastdistill.commands.rundir import prepare_run_dir
from fastdistill.data import dataset_presets, load_dataset
from fastdistill.data.base import to_float
from fastdistill.errors import FastDistillError
from fastdistill.methods import RealData, flat_model
from fastdistill.methods.buffer import META, TRAJECTORIES, save_buffer, train_experts
from fastdistill.methods.functional import stacked_accuracy
from fastdistill.models.accuracy import split_batches
from fastdistill.utils.seed import generator

NAME = "buffer"
HELP = "train expert trajectories for MTT (SGD on real data, parameters saved after every epoch)"
TEST_BATCH = 1024  # test images per accuracy batch


@dataclass(kw_only=True)
class Options(RunOptions):
    arch: str = option("convnet3", "expert network")
    experts: int = option(100, "number of experts", ge=1)
    epochs: int = option(50, "epochs per expert", ge=1)
    lr_teacher: float = option(0.01, "expert SGD learning rate", gt=0)
    batch_size: int | None = option(None, "expert batch size (default 256; 32 for digits, whose 1,347 images give 6 "
                                          "steps per epoch at 256)", ge=1)
    experts_parallel: int = option(25, "experts trained at once in one vmapped step (lower it if memory runs out)",
                                   ge=1)
    no_dsa: bool = option(False, "train experts without DSA")
    quiet: bool = option(False, "no progress bars")


def run(args: Options) -> int:
    device = resolve_device(args.device)
    if args.resume:
        raise FastDistillError("buffer does not resume an interrupted run; start it again with a new --output")
    dataset = load_dataset(args.dataset, args.data_root, args.download, args.image_size, **access_kwargs(args))
    info = dataset.info
    data = RealData(dataset.train, info, device)
    fm = flat_model(args.arch, info, device)
    run_dir = prepare_run_dir(args.output, NAME, resume=False)
    record_run(run_dir, NAME, args, device, inputs={"data": data_fingerprint(dataset)})
    dsa = None if args.no_dsa else DSAConfig(strategy=dsa_strategy_for(info.name))
    batch_size = args.batch_size or dataset_presets(info.name).buffer_batch or 256
    started = time.perf_counter()
    trajectories = train_experts(fm, data, experts=args.experts, epochs=args.epochs, lr=args.lr_teacher,
                                 batch_size=batch_size, dsa=dsa, generator=generator(args.seed, device),
                                 parallel=args.experts_parallel, progress=not args.quiet)
    seconds = time.perf_counter() - started
    final = trajectories[:, -1].to(device)
    acc = stacked_accuracy(fm, final, split_batches(dataset.test, TEST_BATCH),
                           lambda u8: info.normalize(to_float(u8.to(device)))).tolist()
    meta = {"arch": args.arch, "dataset": info.to_dict(), "experts": args.experts, "epochs": args.epochs,
            "lr_teacher": args.lr_teacher, "batch_size": batch_size, "dsa": dsa is not None,
            "seed": args.seed, "num_params": fm.numel, "test_accuracy": acc, "seconds": seconds}
    save_buffer(run_dir, trajectories, meta)
    mean = sum(acc) / len(acc)
    print(f"{args.experts} experts x {args.epochs} epochs on {info.name} in {seconds:.0f} s; expert test accuracy "
          f"{mean:.2f}% (min {min(acc):.2f}, max {max(acc):.2f})")
    print(f"buffer: {run_dir}/{TRAJECTORIES} + {META}; use it with --buffer {run_dir}")
    report_skipped(dataset)
    return 0
