"""What the progressive engine needs from a base method, and the network pool PDD conditions DM/DC/DSA with."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastdistill.augment.dsa import DSAConfig
from fastdistill.methods.config import MethodConfig
from fastdistill.methods.functional import FlatModel, train_networks
from fastdistill.methods.realdata import RealData
from fastdistill.methods.synset import StageImages


class Method(ABC):
    """A base method: ``step`` runs one outer iteration on a stage's images; ``transition`` conditions the networks
    of the next stage on the union. Subclasses keep all state that a resume needs in ``state_dict``."""

    name = ""

    def __init__(self, cfg: MethodConfig, fm: FlatModel, data: RealData, generator: torch.Generator,
                 dsa: DSAConfig | None):
        self.cfg, self.fm, self.data, self.generator, self.dsa = cfg, fm, data, generator, dsa
        self.workdir = Path(".")  # where large per-stage state goes; the engine points it into the run folder

    @abstractmethod
    def start_stage(self, stage: int) -> None:
        """Called once before the first iteration of ``stage``."""

    def initial_images(self) -> torch.Tensor | None:
        """The new subset's starting images ``[C, k, ...]``, or None for the engine's ``init`` (real or noise)."""
        return None

    @abstractmethod
    def step(self, images: StageImages) -> float:
        """One outer iteration (updates ``images.new``); returns the loss."""

    @abstractmethod
    def transition(self, stage: int, x: torch.Tensor, y: torch.Tensor, progress: bool) -> None:
        """Condition the next stage on the union ``(x, y)`` of stages 1..``stage``."""

    def eval_lr(self) -> float | None:
        """The student LR this stage's images should be evaluated with (None: the protocol's)."""
        return None

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything a resume needs (small tensors; large state goes to files in ``workdir``)."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


class PooledMethod(Method):
    """DM / DC / DSA under PDD: stage 1 matches with fresh random networks; after stage i a pool of networks trains on
    U_i (continuing from its state after U_{i-1}), and stage i+1 draws its networks from that pool. ``pool = 0``
    turns the conditioning off (fresh random networks at every stage: only the frozen union conditions). Under
    torchrun the pool's networks are trained in blocks over the ranks and gathered (``train_networks(spread=True)``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool: torch.Tensor | None = None

    def start_stage(self, stage: int) -> None:
        """Nothing to reset: the pool only changes in transitions."""
        return None

    def network(self) -> torch.Tensor:
        """A matching network's flat parameters: random at stage 1, else a copy of a pool member."""
        if self.pool is None:
            return self.fm.random_init(self.generator)
        j = int(torch.randint(self.pool.shape[0], (1,), generator=self.generator, device=self.generator.device))
        return self.pool[j].clone()

    def transition(self, stage: int, x: torch.Tensor, y: torch.Tensor, progress: bool) -> None:
        cfg = self.cfg
        if cfg.pool == 0:
            return
        start = self.pool if self.pool is not None else self.fm.random_inits(cfg.pool, self.generator)
        with tqdm(total=cfg.cond_epochs * cfg.pool, desc=f"pool on U{stage}", unit="ep", disable=not progress) as bar:
            self.pool = train_networks(self.fm, start, x, y, cfg.cond_epochs, lr=cfg.cond_lr, momentum=0.9,
                                       weight_decay=5e-4, batch_size=256, dsa=self.dsa, halve_at=True,
                                       generator=self.generator, chunk=cfg.experts_parallel, spread=True,
                                       on_epoch=bar.update)

    def state_dict(self) -> dict:
        return {"pool": self.pool}

    def load_state_dict(self, state: dict) -> None:
        self.pool = state["pool"]
