"""The progressive engine: P stages, each learning a new per-class subset S_i against the frozen union U_{i-1}.

Stage i: S_i starts from ``ipc/P`` real (or noise) images per class; the base method's ``step`` runs ``iterations``
times on U_{i-1} ∪ S_i (only S_i moves); S_i is then rounded to 8-bit pixels (what is saved is exactly what later
stages see) and frozen; before stage i+1 the method's ``transition`` conditions its networks on U_i. With P = 1 this
is the base method alone.

Resume: ``checkpoint.pt`` (atomic) holds the stage, the phase (distill / transition / done), the iteration, U_{i-1},
S_i with its optimizer state, the method's state and the generator state; it is written every ``checkpoint_every``
iterations and at every phase change, so an interrupted run continues where the checkpoint left off and ends with
the same images as an uninterrupted one (same seed, CPU).

Under torchrun every rank runs the engine with the same state (the methods keep the ranks in step); rank 0 alone
writes the checkpoints and the outputs.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastdistill.data.base import DatasetInfo, to_float, to_uint8
from fastdistill.errors import FastDistillError
from fastdistill.methods.base import Method
from fastdistill.methods.config import MethodConfig
from fastdistill.methods.realdata import RealData
from fastdistill.methods.synset import StageImages
from fastdistill.pipelines.outputs import save_distilled, save_on_main
from fastdistill.utils import distributed
from fastdistill.utils.io import torch_load_checkpoint, torch_save

CHECKPOINT = "checkpoint.pt"


@dataclass
class StageRecord:
    stage: int
    iterations: int
    seconds: float
    first_loss: float
    last_loss: float
    eval_lr: float | None


def quantize(x: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """Normalized images -> the normalized images of their 8-bit pixels (what the PNGs and the tensor file hold)."""
    pixels = to_float(to_uint8(info.denormalize(x.detach())))
    return info.normalize(pixels)


def stage_dir(run_dir: Path, stage: int) -> Path:
    return run_dir / f"stage{stage}"


class ProgressiveRun:
    """Runs (or resumes) the stages of one distillation into ``run_dir``."""

    def __init__(self, method: Method, data: RealData, cfg: MethodConfig, run_dir: Path, generator: torch.Generator,
                 progress: bool = True):
        cfg.validate()
        self.method, self.data, self.cfg, self.run_dir = method, data, cfg, Path(run_dir)
        self.info = data.info
        self.generator, self.progress = generator, progress
        self.method.workdir = self.run_dir
        c, h, w = data.x.shape[1:]
        self.stage, self.phase, self.iteration = 1, "init", 0
        self.frozen = torch.zeros(data.num_classes, 0, c, h, w, device=data.x.device)
        self.images: StageImages | None = None
        self.records: list[StageRecord] = []
        self.losses: list[float] = []

    # --- checkpoints -------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if not distributed.is_main():
            return
        images = self.images
        torch_save(self.run_dir / CHECKPOINT, {
            "stage": self.stage, "phase": self.phase, "iteration": self.iteration, "frozen": self.frozen.cpu(),
            "new": None if images is None else images.new.detach().cpu(),
            "image_optimizer": None if images is None else images.optimizer.state_dict(),
            "method": self.method.state_dict(), "generator": self.generator.get_state(),
            "records": [asdict(r) for r in self.records], "losses": list(self.losses)})

    def load_checkpoint(self) -> bool:
        """Restore the last checkpoint; False if there is none (the run starts from the beginning)."""
        state = torch_load_checkpoint(self.run_dir / CHECKPOINT)
        if state is None:
            return False
        device = self.data.x.device
        self.stage, self.phase, self.iteration = state["stage"], state["phase"], state["iteration"]
        self.frozen = state["frozen"].to(device)
        self.method.load_state_dict(state["method"])
        self.generator.set_state(state["generator"])
        self.records = [StageRecord(**r) for r in state["records"]]
        self.losses = list(state["losses"])
        if state["new"] is not None:
            self.images = StageImages(self.frozen, state["new"].to(device), self.info, self.cfg.lr_img,
                                      self.cfg.img_momentum)
            self.images.optimizer.load_state_dict(state["image_optimizer"])
        return True

    # --- stages ------------------------------------------------------------------------------------------------
    def _init_stage(self) -> None:
        cfg = self.cfg
        self.method.start_stage(self.stage)
        new = self.method.initial_images()
        if new is None and cfg.init == "real":
            new = self.data.init_images(cfg.ipc_stage, self.generator)
        elif new is None:
            shape = (self.data.num_classes, cfg.ipc_stage, *self.data.x.shape[1:])
            new = torch.randn(shape, generator=self.generator, device=self.generator.device).to(self.data.x.device)
            lo, hi = self.info.bounds(new.device)
            new = torch.maximum(torch.minimum(new, hi.view(1, 1, -1, 1, 1)), lo.view(1, 1, -1, 1, 1))
        self.images = StageImages(self.frozen, new, self.info, cfg.lr_img, cfg.img_momentum)
        self.phase, self.iteration, self.losses = "distill", 0, []
        self.save_checkpoint()

    def _distill(self) -> None:
        cfg, images = self.cfg, self.images
        started = time.perf_counter()
        desc = f"{self.method.name} stage {self.stage}/{cfg.stages}"
        bar = tqdm(range(self.iteration, cfg.iterations), desc=desc, initial=self.iteration, total=cfg.iterations,
                   disable=not self.progress, unit="it")
        for it in bar:
            loss = self.method.step(images)
            if not math.isfinite(loss):
                raise FastDistillError(f"{self.method.name} loss became {loss} at stage {self.stage} iteration "
                                       f"{it + 1}; lower --lr-img (now {cfg.lr_img})")
            self.losses.append(loss)
            self.iteration = it + 1
            bar.set_postfix(loss=f"{loss:.4g}")
            if self.iteration % cfg.checkpoint_every == 0 and self.iteration < cfg.iterations:
                self.save_checkpoint()
        bar.close()
        new = quantize(images.new, self.info)
        self._save_stage(new)
        self.frozen = torch.cat([self.frozen, new], 1)
        first = self.losses[0] if self.losses else float("nan")
        last = self.losses[-1] if self.losses else float("nan")
        self.records.append(StageRecord(self.stage, cfg.iterations, time.perf_counter() - started, first, last,
                                        self.method.eval_lr()))
        self.images, self.phase = None, "transition"
        self.save_checkpoint()

    def _save_stage(self, new: torch.Tensor) -> None:
        if self.cfg.stages == 1:
            return
        x = new.flatten(0, 1)
        labels = torch.arange(new.shape[0]).repeat_interleave(new.shape[1])
        tags = [f"stage{self.stage}"] * x.shape[0]
        save_on_main(stage_dir(self.run_dir, self.stage), lambda: save_distilled(
            stage_dir(self.run_dir, self.stage), self.info.denormalize(x).clamp(0, 1), labels, self.info, tags=tags,
            extra={"stage": torch.full((x.shape[0],), self.stage, dtype=torch.int64)}))

    def _transition(self) -> None:
        if self.stage < self.cfg.stages:
            x, y = self.union()
            self.method.transition(self.stage, x, y, self.progress)
        self.stage += 1
        self.phase = "init" if self.stage <= self.cfg.stages else "done"
        self.save_checkpoint()

    def union(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen union as ``(x [N, ...], y [N])``, class-major."""
        y = torch.arange(self.frozen.shape[0], device=self.frozen.device).repeat_interleave(self.frozen.shape[1])
        return self.frozen.flatten(0, 1), y

    def run(self) -> dict:
        """Run every remaining phase; write the union in the standard layout and return its tensor record."""
        while self.phase != "done":
            if self.phase == "init":
                self._init_stage()
            elif self.phase == "distill":
                self._distill()
            else:
                self._transition()
        return self.save_union()

    def save_union(self) -> dict:
        """U_P in stage-major order (stage 1's classes, then stage 2's, ...) with a ``stage`` id per image."""
        k = self.cfg.ipc_stage
        blocks = [self.frozen[:, (s - 1) * k:s * k].flatten(0, 1) for s in range(1, self.cfg.stages + 1)]
        x = torch.cat(blocks)
        per_stage = self.data.num_classes * k
        labels = torch.arange(self.data.num_classes).repeat_interleave(k).repeat(self.cfg.stages)
        stage = torch.arange(1, self.cfg.stages + 1).repeat_interleave(per_stage)
        extra = {"stage": stage, "method": self.method.name, "stages": self.cfg.stages,
                 "eval_lr": [r.eval_lr for r in self.records]}
        return save_on_main(self.run_dir, lambda: save_distilled(
            self.run_dir, self.info.denormalize(x).clamp(0, 1), labels, self.info,
            tags=[f"stage{int(s)}" for s in stage], extra=extra))

