"""A whole DELT recover job, fastdistill against the reference-semantics loop, in image-iterations per second; and the
activation bytes of one image (what sizes fastdistill's launches).

Job: CLASSES x IPC random initial images at SIZE px, a random-init ResNet-18 teacher with non-trivial BN statistics
(``resnet18-cifar`` up to 64 px, torchvision ``resnet18`` above, as DELT's default teacher), groups of BATCH
class-contiguous images with DELT's EarlyLate schedule (``plan_groups``), ITERATIONS in rounds of ROUND:
- fastdistill: the DELT pipeline's recover path in fast mode: launches sized to the device's free memory
  (``size_launches``), ``run_launches`` + ``recover`` (StatBatchNorm2d statistics, one ``subtask_adam_step``,
  per-group crops in one ``grid_sample``);
- reference: the DELT reference's loop, one group after the other: rows sliced with a Python list, torchvision
  RandomResizedCrop + flip on the batch, BatchNorm forward hooks, one ``torch.optim.Adam`` per group with the
  cosine LR, three clamps (``fastdistill.ops.reference``).
Both run the teacher under the same ``--precision`` (bf16: autocast around the forward). Image-iterations (the sum of
active rows over all iterations) are the same number for both. A warm-up launch of each runs first.

Run from the repository root with the checkout first on the path (as gpu_suite.sh does):

    PYTHONPATH=. python benchmarks/delt_job.py --sizes 32,224 --precisions fp32,bf16 --out delt_job.json  # GPU
    PYTHONPATH=. python benchmarks/delt_job.py --smoke                                 # tiny CPU check
    PYTHONPATH=. python benchmarks/delt_job.py --bytes-only --sizes 32,224 --device cpu  # activation bytes
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from fastdistill.augment.groups import reference_crop_flip
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.delt.launch_memory import image_bytes, run_launches, size_launches
from fastdistill.methods.delt.planning import group_generators, largest_launch, plan_groups, plan_launches
from fastdistill.methods.delt.recover import ADAM_BETAS, ADAM_EPS, recover
from fastdistill.methods.delt.schedule import cosine_lr, min_crop_scale
from fastdistill.models import build_model
from fastdistill.ops.reference import active_rows, attach_bn_hooks, hooks_loss, reference_image_update

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LO = [-m / s for m, s in zip(MEAN, STD, strict=True)]
HI = [(1 - m) / s for m, s in zip(MEAN, STD, strict=True)]
# per resolution: classes, ipc, batch, iterations, round iterations (sized for about a minute per row on one H100)
JOBS = {"small": (100, 10, 100, 500, 100), "large": (20, 10, 100, 100, 20)}
SMOKE = {"sizes": "16,72", "job": (2, 2, 2, 2, 1), "probe_images": 2}


def teacher(size: int, classes: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet18-cifar" if size <= 64 else "resnet18", classes, 3, size)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.to(device).eval().requires_grad_(False)


def job_config(size: int, precision: str, job: tuple[int, ...]) -> DELTConfig:
    _, ipc, batch, iterations, rounds = job
    return DELTConfig(dataset="bench", ipc=ipc, iterations=iterations, round_iterations=rounds, lr=0.25, r_bn=0.01,
                      crop_floor=0.08, flip=True, batch_size=batch, precision=precision, teacher_arch="resnet18")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_fastdistill(bank, labels, groups, model, cfg, bounds, device) -> dict:
    largest = largest_launch(groups, cfg)
    sizing = size_launches(bank[groups[0].indices], labels[groups[0].indices], model, cfg, bounds, largest)
    launches = plan_launches(groups, cfg, limit=sizing.groups_per_launch)

    def run(launch):
        idx = torch.cat([g.indices for g in launch])
        recover(bank[idx], labels[idx], len(launch), launch[0].schedule, model, cfg, bounds,
                group_generators(0, launch), progress=False)

    run([groups[0]])  # warm-up (kernel compilation, autotuning)
    sync(device)
    tic = time.perf_counter()
    run_launches(launches, run)
    sync(device)
    return {"seconds": time.perf_counter() - tic, "launches": len(launches),
            "groups_per_launch": sizing.groups_per_launch, "bytes_per_image": sizing.bytes_per_image}


def reference_group(x0, labels, schedule, model, cfg, hooks) -> None:
    inputs = x0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([inputs], lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    total, size = schedule.total_iterations, x0.shape[-1]
    for t in range(total):
        rows = list(schedule.active[t // schedule.round_iterations])
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(cfg.lr, t, total)
        x = reference_crop_flip(active_rows(inputs, rows), size, min_crop_scale(t, total, 1.0, "cosine",
                                                                                   cfg.crop_floor), cfg.flip)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            out = model(x)
        loss = F.cross_entropy(out.float(), labels[rows]) + cfg.r_bn * hooks_loss(hooks, cfg.first_bn_multiplier)
        optimizer.zero_grad()
        loss.backward()
        reference_image_update(inputs, optimizer, LO, HI)


def run_reference(bank, labels, groups, model, cfg, device) -> dict:
    hooks = attach_bn_hooks(model)
    try:
        reference_group(bank[groups[0].indices], labels[groups[0].indices], groups[0].schedule, model, cfg, hooks)
        sync(device)
        tic = time.perf_counter()
        for g in groups:
            reference_group(bank[g.indices], labels[g.indices], g.schedule, model, cfg, hooks)
        sync(device)
    finally:
        for h in hooks:
            h.close()
    return {"seconds": time.perf_counter() - tic, "launches": len(groups)}


def measure_job(size: int, precision: str, job: tuple[int, ...], device: torch.device) -> dict:
    classes, ipc = job[0], job[1]
    cfg = job_config(size, precision, job)
    model = teacher(size, classes, device)
    gen = torch.Generator().manual_seed(0)
    lo, hi = torch.tensor(LO).view(1, 3, 1, 1), torch.tensor(HI).view(1, 3, 1, 1)
    bank = (lo + (hi - lo) * torch.rand(classes * ipc, 3, size, size, generator=gen)).to(device)
    labels = torch.arange(classes, device=device).repeat_interleave(ipc)
    groups = plan_groups([torch.arange(c * ipc, (c + 1) * ipc) for c in range(classes)], cfg)
    image_iterations = sum(sum(g.schedule.iterations_per_row(len(g.classes))) for g in groups)
    bounds = (torch.tensor(LO), torch.tensor(HI))
    fast = run_fastdistill(bank, labels, groups, model, cfg, bounds, device)
    ref = run_reference(bank, labels, groups, model, cfg, device)
    row = {"size": size, "precision": precision, "classes": classes, "ipc": ipc, "batch": cfg.batch_size,
           "iterations": cfg.iterations, "round_iterations": cfg.round_iterations, "groups": len(groups),
           "image_iterations": image_iterations, "fastdistill": fast, "reference": ref}
    for name in ("fastdistill", "reference"):
        row[name]["image_iterations_per_s"] = image_iterations / row[name]["seconds"]
    row["speedup"] = ref["seconds"] / fast["seconds"]
    return row


def measure_bytes(size: int, precision: str, device: torch.device, images: int) -> dict:
    cfg = job_config(size, precision, (10, images, images, 1, 1))
    model = teacher(size, 1000, device)
    x0 = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(0)).clamp(-2, 2).to(device)
    labels = torch.arange(images, device=device)
    bounds = (torch.tensor(LO), torch.tensor(HI))
    return {"size": size, "precision": precision, "arch": "resnet18-cifar" if size <= 64 else "resnet18",
            "bytes_per_image": image_bytes(x0, labels, model, cfg, bounds), "probe_images": images}


def environment(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help=f"tiny job {SMOKE['job']} at sizes {SMOKE['sizes']}")
    parser.add_argument("--bytes-only", action="store_true", help="only the activation bytes per image")
    parser.add_argument("--probe-images", type=int, default=4, help="images per group of the bytes probe")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [int(s) for s in (SMOKE["sizes"] if args.smoke and args.sizes == "32,224" else args.sizes).split(",")]
    precisions = args.precisions.split(",")
    result = {"environment": environment(device), "bytes": [], "jobs": []}
    for size in sizes:
        for precision in precisions:
            row = measure_bytes(size, precision, device, SMOKE["probe_images"] if args.smoke else args.probe_images)
            result["bytes"].append(row)
            print(f"ResNet-18 at {size} px, {precision}: {row['bytes_per_image'] / 2**20:.2f} MiB per image "
                  f"(one recover iteration, {device.type})", flush=True)
    if not args.bytes_only:
        print("| size | precision | images | groups | image-iterations | fastdistill it/s (launches) | "
              "reference it/s | speedup |")
        print("|---|---|---|---|---|---|---|---|")
        for size in sizes:
            job = SMOKE["job"] if args.smoke else JOBS["small" if size <= 64 else "large"]
            for precision in precisions:
                row = measure_job(size, precision, job, device)
                result["jobs"].append(row)
                fast, ref = row["fastdistill"], row["reference"]
                print(f"| {size} | {precision} | {row['classes'] * row['ipc']} | {row['groups']} | "
                      f"{row['image_iterations']:,} | {fast['image_iterations_per_s']:,.1f} ({fast['launches']}) | "
                      f"{ref['image_iterations_per_s']:,.1f} | {row['speedup']:.2f}x |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
