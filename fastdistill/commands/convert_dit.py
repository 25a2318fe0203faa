"""``python -m fastdistill convert-dit``: original DiT ``.pt`` checkpoint -> diffusers folder usable by ``mgd``."""

from __future__ import annotations

from dataclasses import dataclass

from fastdistill.commands._options import option

NAME = "convert-dit"
HELP = "convert an original DiT checkpoint (e.g. DiT-XL-2-256x256.pt) into a diffusers folder for `mgd --diffusion`"


@dataclass(kw_only=True)
class Options:
    checkpoint: str = option(None, "the original DiT .pt file (facebookresearch/DiT)", positional=True, required=True)
    output: str = option(None, "folder to write (transformer/, scheduler/, vae/ with --vae)", required=True)
    vae: str | None = option(None, "local diffusers AutoencoderKL folder to copy in as vae/")
    num_heads: int = option(16, "attention heads (16 for DiT-XL)", ge=1)


def run(args: Options) -> int:
    from fastdistill.pipelines.mgd.convert import convert_checkpoint

    out = convert_checkpoint(args.checkpoint, args.output, args.num_heads, args.vae)
    print(f"wrote {out}; use it with: python -m fastdistill mgd --diffusion {out}"
          + ("" if args.vae else " --vae VAE_DIR"))
    return 0
