"""``python -m fastdistill squeeze``: train a teacher and save it (safetensors + JSON metadata)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from fastdistill.commands._common import (
    RunOptions,
    data_fingerprint,
    load_run_dataset,
    record_run,
    report_skipped,
    resolve_device,
)
from fastdistill.commands._options import option
from fastdistill.commands.rundir import prepare_run_dir
from fastdistill.models import build_model
from fastdistill.models.teacher import META, WEIGHTS, save_teacher
from fastdistill.pipelines.squeeze import SqueezeConfig, train_teacher
from fastdistill.utils import distributed
from fastdistill.utils.seed import seed_everything

NAME = "squeeze"
HELP = "train a teacher classifier on a dataset"


_DEFAULTS = SqueezeConfig()


@dataclass(kw_only=True)
class Options(RunOptions):
    arch: str = option(_DEFAULTS.arch, "architecture (convnet3-bn, resnet18-cifar, torchvision name)",
                       shapes_result=True)
    epochs: int | None = option(None, "epochs (default per dataset)", ge=1, shapes_result=True)
    batch_size: int = option(_DEFAULTS.batch_size, "images per step (under torchrun: the global batch, split "
                                                       "across the ranks)", ge=1, shapes_result=True)
    lr: float = option(_DEFAULTS.lr, "peak SGD learning rate (one-cycle schedule)", gt=0, shapes_result=True)


def run(args: Options) -> int:
    """Train and save the teacher; ``--resume`` reports a finished run, and trains an unfinished one from the start.
    Under torchrun the ranks train one model with DistributedDataParallel and rank 0 saves it."""
    device = resolve_device(args.device)
    seed_everything(args.seed)
    ds = load_run_dataset(args)
    build_model(args.arch, ds.info.num_classes, ds.info.channels, ds.info.image_size)  # refuses a bad --arch now
    run_dir = prepare_run_dir(args.output, f"squeeze-{args.dataset}", args.resume)
    cfg = SqueezeConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    if record_run(run_dir, NAME, args, device, inputs={"data": data_fingerprint(ds)}, done=(WEIGHTS, META),
                  resolved=dataclasses.asdict(cfg)):
        return 0
    start = time.time()
    model, result = train_teacher(ds, cfg, device)  # DistributedDataParallel under torchrun
    if not distributed.is_main():  # rank 0 saves the teacher
        return 0
    save_teacher(run_dir, model, cfg.arch, ds.info, test_accuracy=result["test_accuracy"], epochs=result["epochs"],
                 seed=args.seed, history=result["history"])
    print(f"teacher {cfg.arch} on {ds.info.name}: test top-1 {result['test_accuracy']:.2f}% "
          f"({result['epochs']} epochs, {time.time() - start:.0f}s) -> {run_dir}")
    report_skipped(ds)
    return 0
