"""The base methods the progressive (PDD) engine wraps: matching (DM, DC, DSA, MTT) and DELT (:mod:`.delt`)."""

from __future__ import annotations

import torch
from torch import nn

from fastdistill.augment.dsa import DSAConfig, dsa_strategy_for
from fastdistill.data.base import Dataset, DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.methods.base import Method
from fastdistill.methods.buffer import load_buffer
from fastdistill.methods.config import MethodConfig
from fastdistill.methods.delt.stages import DELTStages
from fastdistill.methods.dm import DM
from fastdistill.methods.functional import FlatModel
from fastdistill.methods.gradmatch import GradientMatching
from fastdistill.methods.mtt import MTT
from fastdistill.methods.realdata import RealData
from fastdistill.models import build_model

__all__ = ["Method", "MethodConfig", "RealData", "build_method", "flat_model"]


def flat_model(arch: str, info: DatasetInfo, device: torch.device | str) -> FlatModel:
    return FlatModel(build_model(arch, info.num_classes, info.channels, info.image_size).to(device))


def build_method(cfg: MethodConfig, data: RealData, generator: torch.Generator, *, dataset: Dataset | None = None,
                 teacher: nn.Module | None = None, seed: int = 0) -> Method:
    """The base method named by ``cfg.method`` on ``data``'s device (delt also needs ``dataset`` and ``teacher``)."""
    info = data.info
    fm = flat_model(cfg.arch, info, data.x.device)
    dsa = DSAConfig(strategy=dsa_strategy_for(info.name)) if cfg.dsa else None
    if cfg.method == "dm":
        return DM(cfg, fm, data, generator, dsa)
    if cfg.method in ("dc", "dsa"):
        return GradientMatching(cfg, fm, data, generator, dsa)
    if cfg.method == "delt":
        if teacher is None or dataset is None:
            raise FastDistillError("--base delt needs a teacher: pass --teacher DIR")
        return DELTStages(cfg, fm, data, generator, dsa, teacher=teacher, dataset=dataset, seed=seed)
    buffer = load_buffer(cfg.buffer, info, cfg.arch, fm)
    return MTT(cfg, fm, data, generator, dsa, buffer=buffer)
