"""PDD + DELT: each stage recovers S_i with DELT's EarlyLate ``recover`` (BN-statistic matching to a teacher), and
every teacher forward of a group also carries the frozen union images of the group's classes, so the statistics
matched are those of U_{i-1} ∪ S_i (the old images are inputs, never updated).

Initial images are DELT's selection (``medium`` by teacher probability by default) of ``ipc`` images per class,
split in priority order across the stages. The frozen images get the same kind of augmentation as the new ones
(a random resized crop per group on DELT's crop curriculum, flips where the dataset allows). One engine iteration
is one whole recover of the stage, so ``--resume`` restarts an interrupted stage from its beginning.
"""

from __future__ import annotations

import torch
from torch import nn

from fastdistill.augment.groups import random_crop_flip_groups
from fastdistill.data.base import Dataset
from fastdistill.methods.base import Method
from fastdistill.methods.delt.config import DELTConfig, validate
from fastdistill.methods.delt.initial import initial_images, selection_input
from fastdistill.methods.delt.planning import group_generators, plan_groups, plan_launches
from fastdistill.methods.delt.recover import recover
from fastdistill.methods.delt.schedule import min_crop_scale
from fastdistill.methods.delt.selection import score_split, select_initial
from fastdistill.methods.synset import StageImages
from fastdistill.utils.seed import generator as make_generator


class UnionTeacher(nn.Module):
    """The teacher on ``[frozen_g ; x_g]`` for every group g; returns the logits of ``x`` only."""

    def __init__(self, teacher: nn.Module, frozen: torch.Tensor, cfg: DELTConfig, total: int,
                 generators: list[torch.Generator]):
        super().__init__()
        self.teacher, self.frozen, self.cfg, self.total, self.generators = teacher, frozen, cfg, total, generators
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups, f = self.frozen.shape[:2]
        if f == 0:
            return self.teacher(x)
        scale = min_crop_scale(self.calls, self.total, self.cfg.milestone, self.cfg.crop, self.cfg.crop_floor)
        self.calls += 1
        old = random_crop_flip_groups(self.frozen.flatten(0, 1), scale, self.cfg.flip, self.generators)
        old = old.view_as(self.frozen)
        both = torch.cat([old, x.view(groups, -1, *x.shape[1:])], 1)
        logits = self.teacher(both.flatten(0, 1)).view(groups, both.shape[1], -1)
        return logits[:, f:].flatten(0, 1)


class DELTStages(Method):
    name = "delt"

    def __init__(self, *args, teacher: nn.Module, dataset: Dataset, seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.dataset = teacher, dataset
        self.delt = DELTConfig.for_dataset(dataset.info.name, image_size=dataset.info.image_size,
                                           ipc=self.cfg.ipc_stage, seed=seed)
        validate(self.delt)
        scores, labels = score_split(teacher, dataset.train, selection_input(dataset, "fast"))
        self.chosen = select_initial(scores, labels, dataset.info.num_classes, self.cfg.ipc, self.delt.selection,
                                     make_generator(seed))
        self.stage = 1
        self.seed = seed

    def start_stage(self, stage: int) -> None:
        self.stage = stage

    def _stage_chosen(self) -> list[torch.Tensor]:
        k = self.cfg.ipc_stage
        return [c[(self.stage - 1) * k:self.stage * k] for c in self.chosen]

    def initial_images(self) -> torch.Tensor:
        """The stage's share of DELT's selection, ``[C, k, ...]`` normalized."""
        x = torch.stack([initial_images(self.dataset, idx, "fast") for idx in self._stage_chosen()])
        return x.to(self.data.x.device)

    def step(self, images: StageImages) -> float:
        groups = plan_groups(self._stage_chosen(), self.delt)
        # the frozen images of a launch stack per group: its groups must also span as many classes
        launches = plan_launches(groups, self.delt, same=lambda g: len(set(g.classes)))
        bounds = self.dataset.info.bounds(images.new.device)
        losses: list[float] = []
        for launch in launches:
            gens = group_generators(self.seed, launch, self.stage)
            x0 = torch.stack([images.new[c, r] for g in launch for c, r in zip(g.classes, g.ranks, strict=True)])
            labels = torch.tensor([c for g in launch for c in g.classes], device=x0.device)
            frozen = torch.stack([images.frozen[sorted(set(g.classes))].flatten(0, 1) for g in launch])
            teacher = UnionTeacher(self.teacher, frozen, self.delt, launch[0].schedule.total_iterations, gens)
            x = recover(x0.detach(), labels, len(launch), launch[0].schedule, teacher, self.delt, bounds, gens,
                        on_iteration=lambda t, v: losses.append(v), progress=False,
                        desc=f"stage {self.stage} groups {launch[0].gid}-{launch[-1].gid}")
            rows = [(c, r) for g in launch for c, r in zip(g.classes, g.ranks, strict=True)]
            with torch.no_grad():
                for (c, r), xi in zip(rows, x, strict=True):
                    images.new[c, r] = xi
        return losses[-1] if losses else 0.0

    def transition(self, stage: int, x: torch.Tensor, y: torch.Tensor, progress: bool) -> None:
        """Nothing to train: the next stage conditions on the union through the teacher's forward."""
        return None

    def state_dict(self) -> dict:
        return {"stage": self.stage}

    def load_state_dict(self, state: dict) -> None:
        self.stage = state["stage"]
