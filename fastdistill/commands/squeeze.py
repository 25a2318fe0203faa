"""``python -m fastdistill squeeze``: train a teacher and save it (safetensors + JSON metadata)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from fastdistill.commands._common import RunOptions, record_run, resolve_device
from fastdistill.commands._options import option
from fastdistill.commands.rundir import prepare_run_dir
from fastdistill.data import load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.models.teacher import save_teacher
from fastdistill.pipelines.squeeze import SqueezeConfig, train_teacher
from fastdistill.utils.seed import seed_everything

NAME = "squeeze"
HELP = "train a teacher classifier on a dataset"


_DEFAULTS = SqueezeConfig()


@dataclass(kw_only=True)
class Options(RunOptions):
    arch: str = option(_DEFAULTS.arch, "architecture (convnet3-bn, resnet18-cifar, torchvision name)")
    epochs: int | None = option(None, "epochs (default per dataset)", ge=1)
    batch_size: int = option(_DEFAULTS.batch_size, "images per step", ge=1)
    lr: float = option(_DEFAULTS.lr, "peak SGD learning rate (one-cycle schedule)", gt=0)


def run(args: Options) -> int:
    if args.resume:
        raise FastDistillError("squeeze does not resume an interrupted run; start it again with a new --output")
    device = resolve_device(args.device)
    seed_everything(args.seed)
    ds = load_dataset(args.dataset, args.data_root, args.download, args.image_size)
    run_dir = prepare_run_dir(args.output, f"squeeze-{args.dataset}", resume=False)
    cfg = SqueezeConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    record_run(run_dir, NAME, args, device, resolved=dataclasses.asdict(cfg))
    start = time.time()
    model, result = train_teacher(ds, cfg, device)
    save_teacher(run_dir, model, cfg.arch, ds.info, test_accuracy=result["test_accuracy"], epochs=result["epochs"],
                 seed=args.seed, history=result["history"])
    print(f"teacher {cfg.arch} on {ds.info.name}: test top-1 {result['test_accuracy']:.2f}% "
          f"({result['epochs']} epochs, {time.time() - start:.0f}s) -> {run_dir}")
    return 0
