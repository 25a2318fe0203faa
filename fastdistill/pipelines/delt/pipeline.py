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
from fastdistill.errors import FastDistillError
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.delt.initial import initial_images, recover_info, selection_input
from fastdistill.methods.delt.launch_memory import run_launches, size_launches
from fastdistill.methods.delt.normalization import ImageNetReadingTeacher
from fastdistill.methods.delt.planning import (
    Group,
    group_generators,
    group_seed,
    largest_launch,
    plan_groups,
    plan_launches,
)
from fastdistill.methods.delt.recover import recover
from fastdistill.methods.delt.selection import chunk_starts, read_scores, score_chunks, score_split, select_initial
from fastdistill.pipelines.delt.teacher import obtain_teacher
from fastdistill.pipelines.outputs import save_distilled
from fastdistill.utils import distributed
from fastdistill.utils.io import torch_load_checkpoint, torch_save, write_json
from fastdistill.utils.seed import generator


def run_delt(ds: Dataset, cfg: DELTConfig, run_dir: Path, device: torch.device, teacher_path: str | None = None,
             progress: bool = True, teacher: nn.Module | None = None) -> dict:
    """Distil ``ds`` with DELT into ``run_dir``; finished groups are checkpointed and skipped on resume.

    ``teacher``: the model at ``teacher_path``, already loaded and checked (else it is loaded, or trained into the run).
    Under torchrun the selection pass is dealt to the ranks by chunk and the groups by cost (a group never spans
    ranks, and each has its own generator, so the images are those of one process); rank 0 assembles and writes the
    outputs and returns the summary, the other ranks return ``summary`` None.
    """
    w = distributed.world()
    torch.manual_seed(cfg.seed)
    start = time.time()
    if teacher is None:
        teacher, teacher_path = obtain_teacher(ds, teacher_path, run_dir, cfg, device)
    tic = time.time()
    chosen = _selection(ds, cfg, teacher, run_dir, progress)
    selection_time = time.time() - tic
    groups = plan_groups(chosen, cfg)
    space = recover_info(ds, cfg.mode)
    bounds = space.bounds(device)
    recover_teacher = ImageNetReadingTeacher(teacher, ds.info).to(device) if cfg.mode == "compat" else teacher
    results: dict[int, torch.Tensor] = {}
    mine = distributed.deal(groups, w, cost=_group_cost)
    for g in mine:  # finished groups (resume)
        if (done := torch_load_checkpoint(_group_file(run_dir, g.gid))) is not None:
            results[g.gid] = done["images"]
    todo = [g for g in mine if g.gid not in results]
    sizing = None
    if todo and not cfg.groups_per_launch and (largest := largest_launch(todo, cfg)) > 1:
        g = todo[0]
        sizing = size_launches(initial_images(ds, g.indices, cfg.mode).to(device),
                               torch.tensor(g.classes, device=device), recover_teacher, cfg, bounds, largest)
    launches = plan_launches(todo, cfg, limit=sizing.groups_per_launch if sizing else None)
    recovered_time = 0.0
    bar = tqdm(total=len(todo), desc=f"{w.tag}DELT groups", disable=not progress or len(launches) <= 1)

    def run_launch(launch: list) -> None:
        nonlocal recovered_time
        x0 = torch.cat([initial_images(ds, g.indices, cfg.mode) for g in launch]).to(device)
        labels = torch.tensor([c for g in launch for c in g.classes], device=device)
        if cfg.mode == "compat":
            torch.manual_seed(group_seed(cfg.seed, launch[0].gid))
        tic = time.time()
        x = recover(x0, labels, len(launch), launch[0].schedule, recover_teacher, cfg, bounds,
                    group_generators(cfg.seed, launch), progress=progress,
                    desc=f"{w.tag}recover groups {launch[0].gid}-{launch[-1].gid}")
        recovered_time += time.time() - tic
        ran.append(len(launch))
        for g, part in zip(launch, x.detach().cpu().chunk(len(launch)), strict=True):
            torch_save(_group_file(run_dir, g.gid), {"images": part.clone()})
            results[g.gid] = part
        bar.update(len(launch))

    halved: list[int] = []
    ran: list[int] = []
    distributed.agree(lambda: run_launches(launches, run_launch, on_halve=halved.append))  # one rank fails: all stop
    bar.close()
    ranks = distributed.gather({"launches": len(ran), "recover_seconds": recovered_time, "halved": halved,
                                "sizing": None if sizing is None else asdict(sizing)})  # every group is saved
    if not w.main:
        return {"teacher": teacher, "teacher_path": teacher_path, "labels": None, "summary": None}
    for g in groups:  # the other ranks' groups
        if g.gid not in results:
            if (done := torch_load_checkpoint(_group_file(run_dir, g.gid))) is None:
                raise FastDistillError(f"group {g.gid}'s images are missing from {run_dir / 'progress'}; every rank "
                                       "must see the run folder (--output on a shared file system)")
            results[g.gid] = done["images"]
    images = torch.cat([results[g.gid] for g in groups])
    labels = torch.tensor([c for g in groups for c in g.classes])
    pixels = space.denormalize(images).clamp(0, 1)
    compat = cfg.mode == "compat"
    save_distilled(run_dir, pixels, labels, ds.info, image_format="jpeg" if compat else "png", truncate=compat,
                   extra={"method": "delt", "ipc": cfg.ipc})
    image_iters = sum(_group_cost(g) for g in groups)
    summary = {"images": int(images.shape[0]), "groups": len(groups), "launches": sum(r["launches"] for r in ranks),
               "image_iterations": image_iters,
               "image_iterations_without_earlylate": cfg.iterations * int(images.shape[0]),
               "selection_seconds": round(selection_time, 2),
               "recover_seconds": round(max(r["recover_seconds"] for r in ranks), 2),
               "total_seconds": round(time.time() - start, 2),
               "launch_memory": ranks[0]["sizing"], "launch_halved_to": halved,
               "teacher": teacher_path, "recover_normalization": {"mean": list(space.mean), "std": list(space.std),
                                                                  "teacher_reads_as_imagenet": compat}}
    if w.size > 1:
        summary["ranks"] = [{"rank": r, "launches": x["launches"], "recover_seconds": round(x["recover_seconds"], 2),
                             "launch_memory": x["sizing"], "launch_halved_to": x["halved"]}
                            for r, x in enumerate(ranks)]
    write_json(run_dir / "summary.json", summary)
    return {"teacher": teacher, "teacher_path": teacher_path, "labels": labels, "summary": summary}


def _group_file(run_dir: Path, gid: int) -> Path:
    return run_dir / "progress" / f"group_{gid:05d}.pt"


def _group_cost(g: Group) -> int:
    """A group's image-iterations (what its recovery costs)."""
    return sum(g.schedule.iterations_per_row(len(g.classes)))


def _selection(ds: Dataset, cfg: DELTConfig, teacher: nn.Module, run_dir: Path, progress: bool
               ) -> list[torch.Tensor]:
    """The initial images per class: saved by an earlier run, else scored (chunks dealt to the ranks, then read
    back from the run folder by rank 0), selected by rank 0 and saved; every rank gets rank 0's answer."""
    sel_file, chunk_dir = run_dir / "progress" / "selection.pt", run_dir / "progress" / "scores"
    w = distributed.world()
    saved = torch_load_checkpoint(sel_file) if w.main else None
    if not distributed.broadcast(saved is not None):
        prepare = selection_input(ds, cfg.mode)
        if w.size == 1:
            scores, labels = score_split(teacher, ds.train, prepare, chunk_dir, progress=progress)
        else:
            positions = distributed.deal(range(len(chunk_starts(len(ds.train)))), w)
            distributed.agree(lambda: score_chunks(teacher, ds.train, prepare, chunk_dir, positions,
                                                   progress=progress, desc=f"{w.tag}scoring train images"))
            # every rank's chunks are saved (or every rank stops with the first one's error)

    def select() -> list[torch.Tensor] | None:
        if not w.main:
            return None
        if saved is not None:
            return saved["chosen"]
        s, y = (scores, labels) if w.size == 1 else read_scores(chunk_dir, len(ds.train))
        chosen = select_initial(s, y, ds.info.num_classes, cfg.ipc, cfg.selection, generator(cfg.seed))
        torch_save(sel_file, {"chosen": chosen, "scores": s})
        return chosen

    return distributed.agree(select, broadcast=True)
