"""DELT end to end: teacher -> selection of real initial images -> EarlyLate recover -> outputs.

The method itself (selection, schedule, launch planning, initial images, recover) lives in
:mod:`fastdistill.methods.delt`; this module runs it over a dataset with checkpoints and writes the outputs.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from fastdistill.data.base import Dataset
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.delt.initial import initial_images, recover_info, selection_input
from fastdistill.methods.delt.launch_memory import run_launches, size_launches
from fastdistill.methods.delt.normalization import ImageNetReadingTeacher
from fastdistill.methods.delt.planning import group_generators, group_seed, largest_launch, plan_groups, plan_launches
from fastdistill.methods.delt.recover import recover
from fastdistill.methods.delt.selection import score_split, select_initial
from fastdistill.pipelines.delt.teacher import obtain_teacher
from fastdistill.pipelines.outputs import save_distilled
from fastdistill.utils.io import torch_load_checkpoint, torch_save, write_json
from fastdistill.utils.seed import generator


def run_delt(ds: Dataset, cfg: DELTConfig, run_dir: Path, device: torch.device, teacher_path: str | None = None,
             progress: bool = True, teacher: nn.Module | None = None) -> dict:
    """Distil ``ds`` with DELT into ``run_dir``; finished groups are checkpointed and skipped on resume.

    ``teacher``: the model at ``teacher_path``, already loaded and checked (else it is loaded, or trained into the run).
    """
    torch.manual_seed(cfg.seed)
    start = time.time()
    if teacher is None:
        teacher, teacher_path = obtain_teacher(ds, teacher_path, run_dir, cfg, device)
    sel_file = run_dir / "progress" / "selection.pt"
    selection_time = 0.0
    if (saved := torch_load_checkpoint(sel_file)) is not None:
        chosen = saved["chosen"]
    else:
        tic = time.time()
        scores, labels = score_split(teacher, ds.train, selection_input(ds, cfg.mode), run_dir / "progress" / "scores",
                                     progress=progress)
        chosen = select_initial(scores, labels, ds.info.num_classes, cfg.ipc, cfg.selection, generator(cfg.seed))
        selection_time = time.time() - tic
        torch_save(sel_file, {"chosen": chosen, "scores": scores})
    groups = plan_groups(chosen, cfg)
    space = recover_info(ds, cfg.mode)
    bounds = space.bounds(device)
    recover_teacher = ImageNetReadingTeacher(teacher, ds.info).to(device) if cfg.mode == "compat" else teacher
    results: dict[int, torch.Tensor] = {}
    for g in groups:  # finished groups (resume)
        if (done := torch_load_checkpoint(run_dir / "progress" / f"group_{g.gid:05d}.pt")) is not None:
            results[g.gid] = done["images"]
    todo = [g for g in groups if g.gid not in results]
    sizing = None
    if todo and not cfg.groups_per_launch and (largest := largest_launch(todo, cfg)) > 1:
        g = todo[0]
        sizing = size_launches(initial_images(ds, g.indices, cfg.mode).to(device),
                               torch.tensor(g.classes, device=device), recover_teacher, cfg, bounds, largest)
    launches = plan_launches(todo, cfg, limit=sizing.groups_per_launch if sizing else None)
    recovered_time = 0.0
    bar = tqdm(total=len(todo), desc="DELT groups", disable=not progress or len(launches) <= 1)

    def run_launch(launch: list) -> None:
        nonlocal recovered_time
        x0 = torch.cat([initial_images(ds, g.indices, cfg.mode) for g in launch]).to(device)
        labels = torch.tensor([c for g in launch for c in g.classes], device=device)
        if cfg.mode == "compat":
            torch.manual_seed(group_seed(cfg.seed, launch[0].gid))
        tic = time.time()
        x = recover(x0, labels, len(launch), launch[0].schedule, recover_teacher, cfg, bounds,
                    group_generators(cfg.seed, launch), progress=progress,
                    desc=f"recover groups {launch[0].gid}-{launch[-1].gid}")
        recovered_time += time.time() - tic
        ran.append(len(launch))
        for g, part in zip(launch, x.detach().cpu().chunk(len(launch)), strict=True):
            torch_save(run_dir / "progress" / f"group_{g.gid:05d}.pt", {"images": part.clone()})
            results[g.gid] = part
        bar.update(len(launch))

    halved: list[int] = []
    ran: list[int] = []
    run_launches(launches, run_launch, on_halve=halved.append)
    bar.close()
    images = torch.cat([results[g.gid] for g in groups])
    labels = torch.tensor([c for g in groups for c in g.classes])
    pixels = space.denormalize(images).clamp(0, 1)
    compat = cfg.mode == "compat"
    save_distilled(run_dir, pixels, labels, ds.info, image_format="jpeg" if compat else "png", truncate=compat,
                   extra={"method": "delt", "ipc": cfg.ipc})
    image_iters = sum(sum(g.schedule.iterations_per_row(len(g.classes))) for g in groups)
    summary = {"images": int(images.shape[0]), "groups": len(groups), "launches": len(ran),
               "image_iterations": image_iters,
               "image_iterations_without_earlylate": cfg.iterations * int(images.shape[0]),
               "selection_seconds": round(selection_time, 2), "recover_seconds": round(recovered_time, 2),
               "total_seconds": round(time.time() - start, 2),
               "launch_memory": None if sizing is None else asdict(sizing), "launch_halved_to": halved,
               "teacher": teacher_path, "recover_normalization": {"mean": list(space.mean), "std": list(space.std),
                                                                  "teacher_reads_as_imagenet": compat}}
    write_json(run_dir / "summary.json", summary)
    return {"teacher": teacher, "teacher_path": teacher_path, "labels": labels, "summary": summary}
