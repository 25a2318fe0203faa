"""MGD3 sampler: all (class, mode) rows batched through the network vs a row-by-row loop of the same math.

Both providers call ``fastdistill.pipelines.mgd.sample_rows`` with the same rows, seeds, modes and settings (DDPM,
lambda 0.1, stop 0.5, CFG 4.0); only ``batch_size`` differs (all rows vs 1). Models are random-init, built from config
(no download):
- ``tiny``: the digits pixel UNet of ``train-diffusion`` (1x8x8, width 32), 100 rows = 10 classes x IPC 10, 10 steps
  on CPU (50 on CUDA);
- ``dit-xl2`` (CUDA only): DiT-XL/2-sized ``DiTTransformer2DModel`` (28 layers, 16x72 heads, 4x32x32 latents,
  8 output channels, 1000 classes), bf16, 50 steps; 100 rows batched, 4 rows row-by-row.
Throughput is images per second; ``extra_info["images"]`` holds the rows per round.

pytest: ``python -m pytest benchmarks/bench_mgd_sampler.py --benchmark-enable``.
Script (both providers in one process, prints the ratio; ``--json FILE`` saves it):
``python benchmarks/bench_mgd_sampler.py [--model tiny|dit-xl2] [--rows N] [--steps N] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import time

import pytest
import torch
from kernel_timing import DEVICE, ON_CUDA, device_name, run

from fastdistill.pipelines.mgd.models import DiTDenoiser, UNetDenoiser
from fastdistill.pipelines.mgd.pixel_diffusion import build_pixel_unet
from fastdistill.pipelines.mgd.sampler import GuidanceConfig, row_seed, sample_rows
from fastdistill.pipelines.mgd.step import cfg_combine, ddpm_step

SCHED = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}
DIT_XL2 = {"num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 4, "out_channels": 8,
           "num_layers": 28, "sample_size": 32, "patch_size": 2, "num_embeds_ada_norm": 1000}


def build(model: str, device: torch.device):
    torch.manual_seed(0)
    if model == "tiny":
        return UNetDenoiser(build_pixel_unet(1, 8, 10, 32).to(device).eval(), torch.float32), 10
    from diffusers import DiTTransformer2DModel

    net = DiTTransformer2DModel(**DIT_XL2).to(device, torch.bfloat16).eval()
    with torch.no_grad():
        net.proj_out_2.weight.mul_(0.1)  # keep random-init outputs small (no NaN/inf in bf16 over 50 steps)
    return DiTDenoiser(net, torch.bfloat16), 1000


def make_rows(rows: int, classes: int, latent_shape: tuple[int, ...]):
    per = max(1, rows // 10)
    pairs = [(c, k) for c in range(10) for k in range(per)][:rows]
    labels = torch.tensor([(c * 97) % classes for c, _ in pairs])
    modes = torch.randn(len(pairs), *latent_shape, generator=torch.Generator().manual_seed(1))
    return labels, modes, [row_seed(0, c, k) for c, k in pairs]


def time_sampler(denoiser, labels, modes, seeds, steps: int, batch_size: int) -> float:
    cfg = GuidanceConfig(steps=steps, cfg_channels=3 if modes.shape[1] == 4 else None)
    if ON_CUDA:
        torch.cuda.synchronize()
    start = time.perf_counter()
    sample_rows(denoiser, cfg, SCHED, labels, modes, seeds, batch_size)
    if ON_CUDA:
        torch.cuda.synchronize()
    return time.perf_counter() - start


CASES = [("tiny", 100, 100), ("tiny", 100, 1)] + ([("dit-xl2", 100, 100), ("dit-xl2", 4, 1)] if ON_CUDA else [])


@pytest.mark.parametrize("model,rows,batch", CASES, ids=lambda v: str(v))
def test_mgd_sampler(benchmark, model, rows, batch):
    denoiser, classes = build(model, DEVICE)
    labels, modes, seeds = make_rows(rows, classes, denoiser.latent_shape)
    steps = 50 if ON_CUDA else 10
    cfg = GuidanceConfig(steps=steps, cfg_channels=3 if model == "dit-xl2" else None)
    benchmark.group = f"mgd-sampler-{model}"
    run(benchmark, lambda: sample_rows(denoiser, cfg, SCHED, labels, modes, seeds, batch), rounds=3 if ON_CUDA else 2,
        warmup=1, calls_per_round=1, op="mgd_sampler", provider="batched" if batch > 1 else "row-by-row",
        model=model, images=rows, steps=steps)


def _avg_seconds(fn, reps: int) -> float:
    fn()
    if ON_CUDA:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    if ON_CUDA:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps


def step_split(denoiser, labels: torch.Tensor, modes: torch.Tensor, reps: int = 10) -> dict:
    """Seconds per sampling step spent in the network (CFG batch) vs in the element-wise step (CFG mix + DDPM)."""
    cfg = GuidanceConfig(steps=50, cfg_channels=3 if modes.shape[1] == 4 else None)
    c = cfg.tables(SCHED, denoiser.learned_sigma).steps[10]
    x = torch.randn(modes.shape, device=DEVICE)
    m, y = modes.to(DEVICE), labels.to(DEVICE)
    both = torch.cat([y, torch.full_like(y, denoiser.null_label)])
    out = denoiser(torch.cat([x, x]), c.t, both)
    cond, uncond = out.chunk(2)
    ch = x.shape[1]
    noise = torch.randn_like(x)

    def elementwise():
        eps = cfg_combine(cond[:, :ch], uncond[:, :ch], 4.0, cfg.cfg_channels)
        ddpm_step(x, eps, cond[:, ch:] if denoiser.learned_sigma else None, c, m, noise)

    network = _avg_seconds(lambda: denoiser(torch.cat([x, x]), c.t, both), reps)
    step = _avg_seconds(elementwise, reps * 5)
    return {"network_s": network, "elementwise_s": step, "elementwise_fraction": step / (network + step)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", choices=["tiny", "dit-xl2"])
    p.add_argument("--rows", type=int, default=100, help="rows of the batched provider")
    p.add_argument("--row-by-row", type=int, default=None, help="rows timed one at a time (default: 100 tiny, 4 DiT)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default 10 on CPU, 50 on CUDA)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--compile", action="store_true", help="torch.compile the network first (CUDA)")
    args = p.parse_args()
    steps = args.steps or (50 if ON_CUDA else 10)
    single = args.row_by_row or (100 if args.model == "tiny" else 4)
    denoiser, classes = build(args.model, DEVICE)
    if args.compile:
        denoiser.net = torch.compile(denoiser.net)
    labels, modes, seeds = make_rows(args.rows, classes, denoiser.latent_shape)
    time_sampler(denoiser, labels, modes, seeds, 2, args.rows)  # warm-up (and compilation) at both batch shapes
    time_sampler(denoiser, labels[:1], modes[:1], seeds[:1], 2, 1)
    batched = time_sampler(denoiser, labels, modes, seeds, steps, args.rows)
    rowwise = time_sampler(denoiser, labels[:single], modes[:single], seeds[:single], steps, 1)
    out = {"model": args.model, "device": device_name(), "torch": torch.__version__, "steps": steps,
           "compiled": args.compile,
           "threads": torch.get_num_threads(),
           "batched": {"rows": args.rows, "seconds": batched, "images_per_s": args.rows / batched},
           "row_by_row": {"rows": single, "seconds": rowwise, "images_per_s": single / rowwise}}
    out["speedup"] = out["batched"]["images_per_s"] / out["row_by_row"]["images_per_s"]
    out["per_step_at_batched_rows"] = step_split(denoiser, labels, modes)
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
