"""DELT end to end: teacher -> selection of real initial images -> EarlyLate recover -> outputs -> evaluation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from fastdistill.data.base import Dataset, Split, to_float
from fastdistill.errors import FastDistillError
from fastdistill.models.teacher import load_teacher, save_teacher
from fastdistill.pipelines.delt.config import DELTConfig
from fastdistill.pipelines.delt.recover import recover
from fastdistill.pipelines.delt.schedule import GroupSchedule, class_rounds, group_schedule
from fastdistill.pipelines.delt.selection import select_initial, true_class_probability
from fastdistill.pipelines.outputs import save_distilled
from fastdistill.pipelines.squeeze import SqueezeConfig, accuracy, train_teacher
from fastdistill.utils.io import torch_load_checkpoint, torch_save, write_json
from fastdistill.utils.seed import generator

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MAX_IMAGES_PER_LAUNCH = 2000


def obtain_teacher(ds: Dataset, teacher_path: str | None, run_dir: Path, cfg: DELTConfig,
                   device: torch.device) -> tuple[nn.Module, str]:
    """Load ``teacher_path``; without one, reuse or train ``run_dir/teacher`` with the squeeze defaults."""
    if teacher_path is None:
        teacher_path = str(run_dir / "teacher")
        if not (run_dir / "teacher" / "teacher.json").exists():
            print(f"no --teacher given: training a {cfg.teacher_arch} teacher on {ds.info.name} into {teacher_path}")
            model, result = train_teacher(ds, SqueezeConfig(arch=cfg.teacher_arch, seed=cfg.seed), device)
            save_teacher(teacher_path, model, cfg.teacher_arch, ds.info, test_accuracy=result["test_accuracy"],
                         epochs=result["epochs"], seed=cfg.seed)
    teacher, _ = load_teacher(teacher_path, ds.info, device)
    if not any(isinstance(m, nn.BatchNorm2d) for m in teacher.modules()):
        raise FastDistillError("the teacher has no BatchNorm2d layers, and DELT matches BN statistics; "
                               "use a batch-norm architecture such as convnet3-bn or resnet18-cifar")
    acc = accuracy(teacher, Split(ds.test.images[:500], ds.test.labels[:500]), ds.info.normalize, device)
    if acc < 200.0 / ds.info.num_classes:
        raise FastDistillError(f"the teacher reaches only {acc:.1f}% on 500 test images of {ds.info.name}; its class "
                               "order probably does not match the data (or it is untrained)")
    return teacher, teacher_path


def reference_view(images_u8: torch.Tensor, size: int) -> torch.Tensor:
    """The reference's Resize(s // 7 * 8) -> CenterCrop(s) view of uint8 images, as pixels in [0, 1]."""
    from torchvision.transforms.v2 import functional as TF

    resized = TF.resize(to_float(images_u8), [size // 7 * 8], antialias=True)
    return TF.center_crop(resized, [size, size])


def selection_input(ds: Dataset, mode: str):
    """Map a uint8 batch to the teacher input used to score it (compat: the reference's ImageNet-stat view)."""
    if mode == "compat":
        c = ds.info.channels
        mean = torch.tensor(IMAGENET_MEAN[:c]).view(1, c, 1, 1)
        std = torch.tensor(IMAGENET_STD[:c]).view(1, c, 1, 1)
        return lambda u8: (reference_view(u8, ds.info.image_size) - mean.to(u8.device)) / std.to(u8.device)
    return lambda u8: ds.info.normalize(to_float(u8))


def initial_images(ds: Dataset, indices: torch.Tensor, mode: str) -> torch.Tensor:
    """Normalized initial images (compat: through the reference's resize + centre crop)."""
    u8 = ds.train.images[indices]
    pixels = reference_view(u8, ds.info.image_size) if mode == "compat" else to_float(u8)
    return ds.info.normalize(pixels.clamp(0, 1))


@dataclass
class Group:
    """One reference batch: rows (class, in-class rank), the train indices of their initial images, its schedule."""

    gid: int
    classes: list[int]
    ranks: list[int]
    indices: torch.Tensor
    schedule: GroupSchedule


def plan_groups(chosen: list[torch.Tensor], cfg: DELTConfig) -> list[Group]:
    """Class-contiguous batches of ``batch_size`` rows, each with its EarlyLate schedule."""
    rows = [(c, rank, int(idx)) for c, per_class in enumerate(chosen) for rank, idx in enumerate(per_class)]
    rounds = class_rounds(len(chosen), cfg.iterations, cfg.round_iterations, cfg.resolved_min_iterations,
                          generator(cfg.seed))
    groups = []
    for gid, start in enumerate(range(0, len(rows), cfg.batch_size)):
        part = rows[start:start + cfg.batch_size]
        classes, ranks = [r[0] for r in part], [r[1] for r in part]
        groups.append(Group(gid, classes, ranks, torch.tensor([r[2] for r in part]),
                            group_schedule(classes, ranks, cfg.ipc, rounds, cfg.round_iterations)))
    return groups


def plan_launches(groups: list[Group], cfg: DELTConfig) -> list[list[Group]]:
    """Batch groups that share size and schedule into launches (one group per launch in compat mode)."""
    if cfg.mode == "compat":
        return [[g] for g in groups]
    limit = cfg.groups_per_launch or max(1, MAX_IMAGES_PER_LAUNCH // cfg.batch_size)
    buckets: dict[tuple, list[Group]] = {}
    for g in groups:
        buckets.setdefault((len(g.classes), g.schedule.active), []).append(g)
    launches = []
    for bucket in buckets.values():
        launches += [bucket[i:i + limit] for i in range(0, len(bucket), limit)]
    return sorted(launches, key=lambda launch: launch[0].gid)


def run_delt(ds: Dataset, cfg: DELTConfig, run_dir: Path, device: torch.device, teacher_path: str | None = None,
             progress: bool = True) -> dict:
    """Distil ``ds`` with DELT into ``run_dir``; finished groups are checkpointed and skipped on resume."""
    torch.manual_seed(cfg.seed)
    start = time.time()
    teacher, teacher_path = obtain_teacher(ds, teacher_path, run_dir, cfg, device)
    sel_file = run_dir / "progress" / "selection.pt"
    if (saved := torch_load_checkpoint(sel_file)) is not None:
        chosen = saved["chosen"]
    else:
        scores = true_class_probability(teacher, ds.train.images, ds.train.labels, selection_input(ds, cfg.mode))
        chosen = select_initial(scores, ds.train.labels, ds.info.num_classes, cfg.ipc, cfg.selection,
                                generator(cfg.seed))
        torch_save(sel_file, {"chosen": chosen, "scores": scores})
    groups = plan_groups(chosen, cfg)
    launches = plan_launches(groups, cfg)
    bounds = ds.info.bounds(device)
    results: dict[int, torch.Tensor] = {}
    recovered_time = 0.0
    for launch in tqdm(launches, desc="DELT launches", disable=not progress or len(launches) == 1):
        files = [run_dir / "progress" / f"group_{g.gid:05d}.pt" for g in launch]
        done = [torch_load_checkpoint(f) for f in files]
        if all(d is not None for d in done):
            results.update({g.gid: d["images"] for g, d in zip(launch, done, strict=True)})
            continue
        x0 = torch.cat([initial_images(ds, g.indices, cfg.mode) for g in launch]).to(device)
        labels = torch.tensor([c for g in launch for c in g.classes], device=device)
        gen = generator(cfg.seed * 1_000_003 + launch[0].gid)
        if cfg.mode == "compat":
            torch.manual_seed(cfg.seed * 1_000_003 + launch[0].gid)
        tic = time.time()
        x = recover(x0, labels, len(launch), launch[0].schedule, teacher, cfg, bounds, gen, progress=progress,
                    desc=f"recover groups {launch[0].gid}-{launch[-1].gid}")
        recovered_time += time.time() - tic
        for g, f, part in zip(launch, files, x.detach().cpu().chunk(len(launch)), strict=True):
            torch_save(f, {"images": part.clone()})
            results[g.gid] = part
    images = torch.cat([results[g.gid] for g in groups])
    labels = torch.tensor([c for g in groups for c in g.classes])
    pixels = ds.info.denormalize(images).clamp(0, 1)
    compat = cfg.mode == "compat"
    save_distilled(run_dir, pixels, labels, ds.info, image_format="jpeg" if compat else "png", truncate=compat,
                   extra={"method": "delt", "ipc": cfg.ipc})
    image_iters = sum(sum(g.schedule.iterations_per_row(len(g.classes))) for g in groups)
    summary = {"images": int(images.shape[0]), "groups": len(groups), "launches": len(launches),
               "image_iterations": image_iters,
               "image_iterations_without_earlylate": cfg.iterations * int(images.shape[0]),
               "recover_seconds": round(recovered_time, 2), "total_seconds": round(time.time() - start, 2),
               "teacher": teacher_path}
    write_json(run_dir / "summary.json", summary)
    return {"teacher": teacher, "teacher_path": teacher_path, "labels": labels, "summary": summary}
