"""``python -m fastdistill train-diffusion``: a small class-conditional pixel-space diffusion model for MGD3 offline."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from fastdistill.commands._common import add_dataset_arguments, add_run_arguments, positive_int, resolve_device
from fastdistill.commands.rundir import args_to_dict, check_resume_config, prepare_run_dir, write_config
from fastdistill.data import load_dataset
from fastdistill.utils.seed import seed_everything

NAME = "train-diffusion"
HELP = "train a small class-conditional pixel diffusion model (diffusers UNet2DModel) for `mgd --diffusion RUN_DIR`"
RESUME_KEYS = ("dataset", "data_root", "image_size", "steps", "batch_size", "lr", "width", "seed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset_arguments(p)
    add_run_arguments(p)
    p.add_argument("--steps", type=positive_int, default=2000, help="optimizer steps (default 2000)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per step (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate, cosine decay (default 1e-3)")
    p.add_argument("--width", type=positive_int, default=32, help="UNet base channels (default 32)")
    p.add_argument("--checkpoint-every", type=positive_int, default=250, help="steps between checkpoints")


def run(args: argparse.Namespace) -> int:
    from fastdistill.pipelines.mgd._deps import require_diffusers
    from fastdistill.pipelines.mgd.pixel_diffusion import PixelTrainConfig, train_pixel_diffusion

    require_diffusers()
    device = resolve_device(args.device)
    run_dir = prepare_run_dir(args.output, NAME, args.resume)
    config = args_to_dict(args)
    if args.resume:
        check_resume_config(run_dir, config, RESUME_KEYS)
    seed_everything(args.seed)
    data = load_dataset(args.dataset, args.data_root, args.download, args.image_size)
    train_cfg = PixelTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, width=args.width,
                                 checkpoint_every=args.checkpoint_every, seed=args.seed)
    write_config(run_dir, NAME, config, device, train=asdict(train_cfg))
    meta = train_pixel_diffusion(data, run_dir, train_cfg, device)
    print(f"trained {args.steps} steps on {data.info.name} (final loss {meta['final_loss']:.4f}); model in {run_dir}")
    print(f"next: python -m fastdistill mgd --dataset {args.dataset} --diffusion {run_dir} --ipc 10")
    return 0
