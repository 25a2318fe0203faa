"""Every setting of the matching-based methods (DM, DC, DSA, MTT) and of the progressive wrapper, in one record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fastdistill.errors import FastDistillError


@dataclass
class MethodConfig:
    """Resolved settings; ``presets.resolve`` fills them from the reference defaults, dataset presets and flags.

    Iteration counts are per stage. ``pool``/``cond_*`` shape PDD's conditioning of DM/DC/DSA: after each stage a
    pool of ``pool`` networks continues training on the union for ``cond_epochs`` epochs, and the next stage samples
    its matching networks from that pool.
    """

    method: str
    ipc: int = 10
    stages: int = 1
    iterations: int = 1000
    arch: str = "convnet3"
    init: str = "real"
    lr_img: float = 1.0
    img_momentum: float = 0.5
    batch_real: int = 256
    dsa: bool = True
    # PDD conditioning of DM / DC / DSA networks
    pool: int = 10
    cond_epochs: int = 300
    cond_lr: float = 0.01
    # DC / DSA
    outer_loop: int = 10
    inner_loop: int = 50
    lr_net: float = 0.01
    batch_train: int = 256
    # MTT
    buffer: str | None = None
    syn_steps: int = 30
    expert_epochs: int = 2
    max_start_epoch: int = 20
    lr_lr: float = 1e-5
    lr_teacher: float = 0.01
    batch_syn: int | None = None
    transition_epochs: int = 1000
    memory: str = "full"
    experts_parallel: int = 25
    checkpoint_every: int = 50

    def validate(self) -> None:
        """Raise a one-line error for settings no run can use."""
        if self.stages > self.ipc:
            raise FastDistillError(f"--stages {self.stages} is more than --ipc {self.ipc}: every stage adds at least "
                                   f"one image per class; use at most --stages {self.ipc}")
        if self.ipc % self.stages:
            raise FastDistillError(f"--ipc {self.ipc} is not a multiple of --stages {self.stages}; every stage adds "
                                   "ipc/stages images per class")
        if self.memory not in ("full", "lean"):
            raise FastDistillError(f"--memory must be full or lean, got {self.memory!r}")
        if self.init not in ("real", "noise"):
            raise FastDistillError(f"--init must be real or noise, got {self.init!r}")

    @property
    def ipc_stage(self) -> int:
        return self.ipc // self.stages

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
