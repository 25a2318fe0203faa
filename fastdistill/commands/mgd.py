"""``python -m fastdistill mgd``: MGD3 mode-guided diffusion distillation (see fastdistill/pipelines/mgd/README.md).

Under torchrun the latent encoding, the mode discovery, the sampling chunks and the evaluation's students are dealt
to the ranks; rank 0 writes the outputs, which are the same bytes as one process's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastdistill.commands._common import (
    RunOptions,
    access_kwargs,
    data_fingerprint,
    record_run,
    report_skipped,
    resolve_device,
    teacher_format_option,
)
from fastdistill.commands._options import option
from fastdistill.eval.protocols import NAMED_PROTOCOLS, check_named_protocol, protocol_staging
from fastdistill.models.teacher import teacher_format
from fastdistill.utils import distributed
from fastdistill.utils.fingerprint import files_sha256

NAME = "mgd"
WEIGHT_SUFFIXES = {".safetensors", ".bin"}  # diffusers weight files
HELP = "MGD3: mode-guided diffusion distillation with a local diffusion model (DiT-XL/2 or train-diffusion)"


@dataclass(kw_only=True)
class Options(RunOptions):
    """MGD3 options; the sampler defaults are the paper's (spec mgd.md section 4)."""

    diffusion: str = option(None, "train-diffusion run folder, or a diffusers DiT folder (transformer/, vae/)",
                            required=True, metavar="DIR", shapes_result=True)
    vae: str | None = option(None, "diffusers AutoencoderKL folder (default: DIR/vae)", metavar="DIR",
                             shapes_result=True)
    ipc: int = option(10, "images (= modes) per class", ge=1, shapes_result=True)
    guidance_scale: float = option(0.1, "mode-guidance lambda (0 = off)", ge=0, shapes_result=True)
    stop_guidance: float = option(0.5, "stop guiding after this fraction of the sampling steps (0.5 = 25 of 50; 1 = "
                                       "never guide, 0 = guide all steps but the last)", ge=0, le=1,
                                  shapes_result=True)
    cfg_scale: float = option(4.0, "classifier-free guidance scale (1 = off)", ge=0, shapes_result=True)
    cfg_channels: int | None = option(None, "apply CFG to the first N latent channels only (default: 3 for DiT as in "
                                            "its reference sampler, all for pixel models)", ge=1, shapes_result=True)
    steps: int = option(50, "sampling steps", ge=1, shapes_result=True)
    sampler: str = option("ddpm", "DDPM learned-range or DDIM (eta 0)", choices=["ddpm", "ddim"], shapes_result=True)
    modes: str = option("kmeans", "mode discovery", choices=["kmeans", "gmm", "random"], shapes_result=True)
    kmeans_seed: int = option(0, "seed of the k-means mode discovery, fixed across generation seeds as in the "
                                 "reference", shapes_result=True)
    closest_real: bool = option(False, "snap every mode to its nearest real latent", shapes_result=True)
    batch_size: int = option(100, "(class, mode) rows per network batch", ge=1, shapes_result=True)
    dtype: str = option("auto", "network dtype (auto: bfloat16 on CUDA, float32 on CPU); the sampler math stays "
                                "float32", choices=["auto", "float32", "bfloat16", "float16"], shapes_result=True)
    precision: str = option("fp32", "sampling network arithmetic: fp32, or bf16 autocast over the network's dtype "
                                    "(the sampler math stays fp32)", choices=["fp32", "bf16"], shapes_result=True)
    channels_last: bool = option(False, "channels-last network inputs and weights while sampling")
    class_map: str | None = option(None, "imagenette | imagewoof | imageidc | JSON file mapping class folders to "
                                         "generator ids (default: search the shipped ImageNet mappings)",
                                   shapes_result=True)
    latent_cache: str | None = option(None, "folder for the cached real-image latents, reusable across IPCs and "
                                            "seeds (default: OUTPUT/latents)", metavar="DIR")
    teacher: str | None = option(None, "teacher folder (`squeeze`), torchvision:NAME or a reference checkpoint for "
                                       "the soft-label evaluation")
    teacher_weights: str | None = option(None, "state-dict file of a torchvision:NAME teacher (default: the torch "
                                               "hub cache's)")
    teacher_format: str | None = teacher_format_option()
    no_eval: bool = option(False, "skip the evaluation at the end")
    eval_seeds: int = option(3, "students per evaluated set", ge=1)
    eval_epochs: int | None = option(None, "student epochs (default per protocol)", ge=1)
    eval_protocol: str | None = option(None, "a named protocol for the evaluation instead of hard and soft (as "
                                             "evaluate --protocol)", choices=list(NAMED_PROTOCOLS))
    eval_lr: float | None = option(None, "student learning rate (default: the protocol's)", gt=0)
    eval_feature_model: str | None = option(None, "model whose penultimate features measure diversity: a teacher "
                                                  "folder, torchvision:NAME or pixels (default: --teacher)")


def _evaluate(run_dir: Path, record: dict, data, args: Options, device) -> None:
    from fastdistill.eval.harness import evaluate_distilled, write_results

    protocols = ("hard", "soft") if args.teacher else ("hard",)
    named = args.eval_protocol
    if not args.teacher and named is None:
        print("note: soft-label protocol skipped: no teacher (pass --teacher DIR from `fastdistill squeeze`)")
    stages, stage_lrs = (None, None) if named is None else \
        protocol_staging(named, int(record["labels"].numel()), None, None, args.eval_lr is not None)
    results = evaluate_distilled(record["images"], record["labels"], data, teacher=args.teacher, protocols=protocols,
                                 seeds=args.eval_seeds, epochs=args.eval_epochs, device=device, lr=args.eval_lr,
                                 teacher_weights=args.teacher_weights, teacher_format=args.teacher_format,
                                 feature_model=args.eval_feature_model, full_data="cached", protocol=named,
                                 stages=stages, stage_lrs=stage_lrs, all_ranks=True)
    results["run"] = str(run_dir)
    if not args.teacher and named is None:
        results.setdefault("skipped", {})["soft"] = "no teacher (pass --teacher DIR)"
    if distributed.is_main():
        write_results(run_dir, results)


def _weights(gen) -> dict[str, str]:
    """sha256 of the weight files (safetensors, bin) of each folder the generator was loaded from."""
    return {f"{name} weights": files_sha256(folder, [f for f in Path(folder).rglob("*")
                                                     if f.suffix in WEIGHT_SUFFIXES and f.is_file()])
            for name, folder in gen.sources.items()}


def run(args: Options) -> int:
    from fastdistill.commands.rundir import prepare_run_dir
    from fastdistill.data import load_dataset
    from fastdistill.pipelines.mgd import GuidanceConfig, MGDConfig, load_generator, resolve_dtype, run_mgd
    from fastdistill.pipelines.mgd._deps import require_diffusers
    from fastdistill.pipelines.mgd.pipeline import check_inputs
    from fastdistill.report import write_run_report
    from fastdistill.utils.seed import seed_everything

    require_diffusers()
    teacher_format(args.teacher, args.teacher_format)  # a format without a teacher, or the wrong one: refused now
    if not args.no_eval:
        check_named_protocol(args.eval_protocol, args.teacher is not None, args.eval_lr is not None)
    device = resolve_device(args.device)
    gen = load_generator(args.diffusion, args.vae, device, resolve_dtype(args.dtype, device))
    image_size = args.image_size
    if args.dataset == "imagefolder" and image_size is None:
        image_size = gen.image_size
    data = load_dataset(args.dataset, args.data_root, args.download, image_size, **access_kwargs(args))
    guidance = GuidanceConfig(steps=args.steps, sampler=args.sampler, guidance_scale=args.guidance_scale,
                              stop_guidance=args.stop_guidance, cfg_scale=args.cfg_scale,
                              cfg_channels=args.cfg_channels, precision=args.precision,
                              channels_last=args.channels_last)
    cfg = MGDConfig(ipc=args.ipc, guidance=guidance, modes=args.modes, closest_real=args.closest_real,
                    batch_size=args.batch_size, seed=args.seed, kmeans_seed=args.kmeans_seed, class_map=args.class_map,
                    latent_cache=args.latent_cache)
    check_inputs(data, gen, cfg)
    run_dir = prepare_run_dir(args.output, f"mgd-{args.dataset}", args.resume)
    done = ("distilled.pt",) if args.no_eval else ("distilled.pt", "results.json")
    if record_run(run_dir, NAME, args, device, inputs={**_weights(gen), "data": data_fingerprint(data)}, done=done,
                  generator=gen.kind, generator_sources=gen.sources):
        return 0
    seed_everything(args.seed)
    record = run_mgd(data, gen, cfg, run_dir, device)
    print(f"MGD3: {record['images'].shape[0]} images ({args.ipc}/class, {record['guided_steps']} guided steps of "
          f"{args.steps}; sampling {record['sampling_seconds']:.1f} s) -> {run_dir}")
    if not args.no_eval:
        _evaluate(run_dir, record, data, args, device)
    if distributed.is_main():
        report_skipped(data)
        write_run_report(run_dir)
    return 0
