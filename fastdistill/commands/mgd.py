"""``python -m fastdistill mgd``: MGD3 mode-guided diffusion distillation (see fastdistill/pipelines/mgd/README.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fastdistill.commands._common import add_dataset_arguments, add_run_arguments, positive_int, resolve_device
from fastdistill.errors import FastDistillError

NAME = "mgd"
HELP = "MGD3: mode-guided diffusion distillation with a local diffusion model (DiT-XL/2 or train-diffusion)"
SHAPING = ("dataset", "data_root", "image_size", "diffusion", "vae", "ipc", "guidance_scale", "stop_guidance",
           "cfg_scale", "cfg_channels", "steps", "sampler", "modes", "closest_real", "batch_size", "seed", "dtype",
           "class_map")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset_arguments(p)
    add_run_arguments(p)
    p.add_argument("--diffusion", required=True, metavar="DIR",
                   help="train-diffusion run folder, or a diffusers DiT folder (transformer/, vae/)")
    p.add_argument("--vae", default=None, metavar="DIR", help="diffusers AutoencoderKL folder (default: DIR/vae)")
    p.add_argument("--ipc", type=positive_int, default=10, help="images (= modes) per class (default 10)")
    p.add_argument("--guidance-scale", type=float, default=0.1, help="mode-guidance lambda (default 0.1; 0 = off)")
    p.add_argument("--stop-guidance", type=float, default=0.5,
                   help="stop guiding after this fraction of the sampling steps (default 0.5 = 25 of 50; 1 = never "
                        "guide, 0 = guide all steps but the last)")
    p.add_argument("--cfg-scale", type=float, default=4.0, help="classifier-free guidance scale (default 4.0; 1 = off)")
    p.add_argument("--cfg-channels", type=positive_int, default=None,
                   help="apply CFG to the first N latent channels only (default: 3 for DiT as in its reference "
                        "sampler, all for pixel models)")
    p.add_argument("--steps", type=positive_int, default=50, help="sampling steps (default 50)")
    p.add_argument("--sampler", default="ddpm", choices=["ddpm", "ddim"], help="DDPM learned-range or DDIM (eta 0)")
    p.add_argument("--modes", default="kmeans", choices=["kmeans", "gmm", "random"], help="mode discovery")
    p.add_argument("--closest-real", action="store_true", help="snap every mode to its nearest real latent")
    p.add_argument("--batch-size", type=positive_int, default=100, help="(class, mode) rows per network batch")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="network dtype (auto: bfloat16 on CUDA, float32 on CPU); the sampler math stays float32")
    p.add_argument("--class-map", default=None,
                   help="imagenette | imagewoof | imageidc | JSON file mapping class folders to generator ids "
                        "(default: search the shipped ImageNet mappings)")
    p.add_argument("--latent-cache", default=None, metavar="DIR",
                   help="folder for the cached real-image latents, reusable across IPCs and seeds "
                        "(default: OUTPUT/latents)")
    p.add_argument("--teacher", default=None, help="teacher folder (`squeeze`) for the soft-label evaluation")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    p.add_argument("--eval-seeds", type=positive_int, default=3, help="students per evaluated set (default 3)")
    p.add_argument("--eval-epochs", type=positive_int, default=None, help="student epochs (default per protocol)")


def _evaluate(run_dir: Path, record: dict, data, args: argparse.Namespace, device) -> None:
    from fastdistill.eval.harness import evaluate_distilled, write_results

    protocols = ("hard", "soft") if args.teacher else ("hard",)
    if not args.teacher:
        print("note: soft-label protocol skipped: no teacher (pass --teacher DIR from `fastdistill squeeze`)")
    results = evaluate_distilled(record["images"], record["labels"], data, teacher=args.teacher, protocols=protocols,
                                 seeds=args.eval_seeds, epochs=args.eval_epochs, device=device)
    results["run"] = str(run_dir)
    if not args.teacher:
        results["skipped"] = {"soft": "no teacher (pass --teacher DIR)"}
    write_results(run_dir, results)


def run(args: argparse.Namespace) -> int:
    from fastdistill.commands.rundir import args_to_dict, check_resume_config, prepare_run_dir, write_config
    from fastdistill.data import load_dataset
    from fastdistill.pipelines.mgd import GuidanceConfig, MGDConfig, load_generator, resolve_dtype, run_mgd
    from fastdistill.pipelines.mgd._deps import require_diffusers
    from fastdistill.utils.seed import seed_everything

    require_diffusers()
    if args.guidance_scale < 0:
        raise FastDistillError(f"--guidance-scale must be >= 0, got {args.guidance_scale}")
    device = resolve_device(args.device)
    gen = load_generator(args.diffusion, args.vae, device, resolve_dtype(args.dtype, device))
    image_size = args.image_size
    if args.dataset == "imagefolder" and image_size is None:
        image_size = gen.image_size
    data = load_dataset(args.dataset, args.data_root, args.download, image_size)
    run_dir = prepare_run_dir(args.output, f"mgd-{args.dataset}", args.resume)
    config = args_to_dict(args)
    if args.resume:
        check_resume_config(run_dir, config, SHAPING)
    write_config(run_dir, NAME, config, device, generator=gen.kind, generator_sources=gen.sources)
    seed_everything(args.seed)
    guidance = GuidanceConfig(steps=args.steps, sampler=args.sampler, guidance_scale=args.guidance_scale,
                              stop_guidance=args.stop_guidance, cfg_scale=args.cfg_scale,
                              cfg_channels=args.cfg_channels)
    cfg = MGDConfig(ipc=args.ipc, guidance=guidance, modes=args.modes, closest_real=args.closest_real,
                    batch_size=args.batch_size, seed=args.seed, class_map=args.class_map,
                    latent_cache=args.latent_cache)
    record = run_mgd(data, gen, cfg, run_dir, device)
    print(f"MGD3: {record['images'].shape[0]} images ({args.ipc}/class, {record['guided_steps']} guided steps of "
          f"{args.steps}) -> {run_dir}")
    if not args.no_eval:
        _evaluate(run_dir, record, data, args, device)
    return 0
