"""``python -m fastdistill convert-dit``: original DiT ``.pt`` checkpoint -> diffusers folder usable by ``mgd``."""

from __future__ import annotations

import argparse

from fastdistill.commands._common import positive_int

NAME = "convert-dit"
HELP = "convert an original DiT checkpoint (e.g. DiT-XL-2-256x256.pt) into a diffusers folder for `mgd --diffusion`"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="the original DiT .pt file (facebookresearch/DiT)")
    p.add_argument("--output", required=True, help="folder to write (transformer/, scheduler/, vae/ with --vae)")
    p.add_argument("--vae", default=None, help="local diffusers AutoencoderKL folder to copy in as vae/")
    p.add_argument("--num-heads", type=positive_int, default=16, help="attention heads (16 for DiT-XL)")


def run(args: argparse.Namespace) -> int:
    from fastdistill.pipelines.mgd.convert import convert_checkpoint

    out = convert_checkpoint(args.checkpoint, args.output, args.num_heads, args.vae)
    print(f"wrote {out}; use it with: python -m fastdistill mgd --diffusion {out}"
          + ("" if args.vae else " --vae VAE_DIR"))
    return 0
