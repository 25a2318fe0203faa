"""Expert trajectories for MTT: ``python -m fastdistill buffer`` and PDD+MTT's regeneration after each stage.

A buffer folder holds ``trajectories.pt`` (``{"trajectories": float32 [E, epochs + 1, P], ...}``: the flat parameters
of E experts before training and after every epoch) and ``buffer.json`` (architecture, dataset, training settings,
expert test accuracy). Experts are trained like the reference's (SGD lr_teacher, no momentum, no weight decay, DSA,
batch 256), ``experts_parallel`` at a time in one vmapped step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastdistill.augment.dsa import DSAConfig
from fastdistill.data.base import DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.methods.config import MethodConfig
from fastdistill.methods.functional import FlatModel, train_networks
from fastdistill.methods.realdata import RealData
from fastdistill.utils.io import read_json, torch_load, torch_save, write_json

TRAJECTORIES, META = "trajectories.pt", "buffer.json"


@dataclass
class Buffer:
    trajectories: torch.Tensor  # [E, L, P] float32
    meta: dict

    @property
    def epochs(self) -> int:
        return self.trajectories.shape[1] - 1


def train_experts(fm: FlatModel, data: RealData, *, experts: int, epochs: int, lr: float, batch_size: int,
                  dsa: DSAConfig | None, generator: torch.Generator, parallel: int, progress: bool) -> torch.Tensor:
    """Trajectories ``[experts, epochs + 1, P]`` (CPU) of randomly initialised networks trained on real data."""
    starts = fm.random_inits(experts, generator)
    with tqdm(total=epochs * experts, desc="experts", unit="ep", disable=not progress) as bar:
        return train_networks(fm, starts, data.x, data.y, epochs, lr=lr, batch_size=batch_size, dsa=dsa,
                              generator=generator, record=True, chunk=parallel, on_epoch=bar.update)


def save_buffer(folder: str | Path, trajectories: torch.Tensor, meta: dict) -> Path:
    folder = Path(folder)
    torch_save(folder / TRAJECTORIES, {"trajectories": trajectories.float().contiguous()})
    write_json(folder / META, meta)
    return folder


def _how(dataset: str, arch: str) -> str:
    return f"make one with `python -m fastdistill buffer --dataset {dataset} --arch {arch} --output DIR`"


def check_buffer_folder(folder: str | Path | None, dataset: str, arch: str) -> Path:
    """Fail early, with what to do, if ``folder`` holds no buffer."""
    if folder is None:
        raise FastDistillError(f"MTT needs expert trajectories: pass --buffer DIR ({_how(dataset, arch)})")
    folder = Path(folder)
    if not (folder / TRAJECTORIES).exists() or not (folder / META).exists():
        raise FastDistillError(f"no expert buffer in {folder} ({TRAJECTORIES} and {META} expected); "
                               f"{_how(dataset, arch)}")
    return folder


def load_buffer(folder: str | Path | None, info: DatasetInfo, arch: str, fm: FlatModel) -> Buffer:
    """Read a buffer and check it was made for this dataset and architecture."""
    folder = check_buffer_folder(folder, info.name, arch)
    how = _how(info.name, arch)
    meta = read_json(folder / META)
    if meta.get("dataset", {}).get("name") != info.name or meta.get("arch") != arch:
        raise FastDistillError(f"buffer {folder} was made for {meta.get('dataset', {}).get('name')}/{meta.get('arch')}"
                               f", not {info.name}/{arch}; {how}")
    record = torch_load(folder / TRAJECTORIES, how)
    if not isinstance(record, dict) or "trajectories" not in record:
        raise FastDistillError(f"{folder / TRAJECTORIES} holds no 'trajectories'; {how}")
    trajectories = record["trajectories"]
    if trajectories.dim() != 3 or trajectories.shape[2] != fm.numel:
        raise FastDistillError(f"buffer {folder} holds {tuple(trajectories.shape)} parameters, the network has "
                               f"{fm.numel}; {how}")
    return Buffer(trajectories, meta)


def regenerate(fm: FlatModel, starts: torch.Tensor, x: torch.Tensor, y: torch.Tensor, data: RealData,
               cfg: MethodConfig, *, lr_union: float, real_batch: int, generator: torch.Generator,
               dsa: DSAConfig | None, progress: bool) -> torch.Tensor:
    """PDD+MTT transition: train every expert from ``starts [E, P]`` on the union for ``transition_epochs`` epochs
    (SGD lr ``lr_union``, momentum 0.9, wd 5e-4, x0.1 at half, DSA, batch 256), then record it for
    ``max_start_epoch + expert_epochs + 1`` epochs on real data as the buffer was made (lr_teacher, no momentum,
    batch ``real_batch``): ``[E, L, P]`` on the CPU. Under torchrun the experts are trained in blocks over the ranks
    and gathered."""
    experts = starts.shape[0]
    real_epochs = cfg.max_start_epoch + cfg.expert_epochs + 1
    with tqdm(total=(cfg.transition_epochs + real_epochs) * experts, desc="transition", unit="ep",
              disable=not progress) as bar:
        conditioned = train_networks(fm, starts, x, y, cfg.transition_epochs, lr=lr_union, momentum=0.9,
                                     weight_decay=5e-4, batch_size=256, dsa=dsa, halve_at=True, generator=generator,
                                     chunk=cfg.experts_parallel, on_epoch=bar.update, spread=True)
        return train_networks(fm, conditioned, data.x, data.y, real_epochs, lr=cfg.lr_teacher, batch_size=real_batch,
                              dsa=dsa, generator=generator, record=True, chunk=cfg.experts_parallel,
                              on_epoch=bar.update, spread=True)
