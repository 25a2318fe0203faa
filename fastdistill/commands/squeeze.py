"""``python -m fastdistill squeeze``: train a teacher and save it (safetensors + JSON metadata)."""

from __future__ import annotations

import argparse
import dataclasses
import time

from fastdistill.commands._common import add_dataset_arguments, add_run_arguments, positive_int, resolve_device
from fastdistill.commands.rundir import args_to_dict, prepare_run_dir, write_config
from fastdistill.data import load_dataset
from fastdistill.models.teacher import save_teacher
from fastdistill.pipelines.squeeze import SqueezeConfig, train_teacher
from fastdistill.utils.seed import seed_everything

NAME = "squeeze"
HELP = "train a teacher classifier on a dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset_arguments(p)
    add_run_arguments(p)
    defaults = SqueezeConfig()
    p.add_argument("--arch", default=defaults.arch, help="architecture (convnet3-bn, resnet18-cifar, torchvision name)")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs (default per dataset)")
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr, help="peak SGD learning rate (one-cycle schedule)")


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    seed_everything(args.seed)
    ds = load_dataset(args.dataset, args.data_root, args.download, args.image_size)
    run_dir = prepare_run_dir(args.output, f"squeeze-{args.dataset}", resume=False)
    cfg = SqueezeConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    write_config(run_dir, NAME, {**args_to_dict(args), **dataclasses.asdict(cfg)}, device)
    start = time.time()
    model, result = train_teacher(ds, cfg, device)
    save_teacher(run_dir, model, cfg.arch, ds.info, test_accuracy=result["test_accuracy"], epochs=result["epochs"],
                 seed=args.seed, history=result["history"])
    print(f"teacher {cfg.arch} on {ds.info.name}: test top-1 {result['test_accuracy']:.2f}% "
          f"({result['epochs']} epochs, {time.time() - start:.0f}s) -> {run_dir}")
    return 0
