"""``python -m fastdistill train-diffusion``: a small class-conditional pixel-space diffusion model for MGD3 offline."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
from fastdistill.data import load_dataset
from fastdistill.utils.seed import seed_everything

NAME = "train-diffusion"
HELP = "train a small class-conditional pixel diffusion model (diffusers UNet2DModel) for `mgd --diffusion RUN_DIR`"


@dataclass(kw_only=True)
class Options(RunOptions):
    steps: int = option(2000, "optimizer steps", ge=1, shapes_result=True)
    batch_size: int = option(64, "images per step", ge=1, shapes_result=True)
    lr: float = option(1e-3, "peak AdamW learning rate, cosine decay", gt=0, shapes_result=True)
    width: int = option(32, "UNet base channels", ge=1, shapes_result=True)
    checkpoint_every: int = option(250, "steps between checkpoints", ge=1)


def run(args: Options) -> int:
    from fastdistill.pipelines.mgd._deps import require_diffusers
    from fastdistill.pipelines.mgd.pixel_diffusion import META, PixelTrainConfig, train_pixel_diffusion

    require_diffusers()
    device = resolve_device(args.device)
    seed_everything(args.seed)
    data = load_dataset(args.dataset, args.data_root, args.download, args.image_size, **access_kwargs(args))
    run_dir = prepare_run_dir(args.output, NAME, args.resume)
    train_cfg = PixelTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, width=args.width,
                                 checkpoint_every=args.checkpoint_every, seed=args.seed)
    if record_run(run_dir, NAME, args, device, inputs={"data": data_fingerprint(data)}, done=(META,),
                  resolved=asdict(train_cfg)):
        return 0
    meta = train_pixel_diffusion(data, run_dir, train_cfg, device)
    print(f"trained {args.steps} steps on {data.info.name} (final loss {meta['final_loss']:.4f}); model in {run_dir}")
    print(f"next: python -m fastdistill mgd --dataset {args.dataset} --diffusion {run_dir} --ipc 10")
    report_skipped(data)
    return 0
