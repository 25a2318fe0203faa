"""Pinned defaults: the reference settings per method, then the dataset spec's presets, then the user's flags.

Reference values (spec §3): DM 20000 iterations, lr_img 1, real batch 256/class, siamese DSA; DC/DSA 1000 iterations,
lr_img 0.1, real batch 256/class, (outer, inner) loops by IPC, lr_net 0.01; MTT 5000 iterations, syn_steps 30,
expert_epochs 2, max_start_epoch 20, lr_img 1000 (no ZCA; the spec treats lr_img as tuned), lr_lr 1e-5,
lr_teacher 0.01, all images per inner step, 1000 transition epochs. The per-dataset presets (``methods`` of
:class:`fastdistill.data.specs.DatasetPresets`; ``digits`` shrinks iteration counts and loops and rescales the image
learning rates, see its entry) override them.
"""

from __future__ import annotations

import dataclasses

from fastdistill.data.specs import dataset_presets
from fastdistill.errors import FastDistillError
from fastdistill.methods.config import MethodConfig
from fastdistill.methods.gradmatch import default_loops

METHODS = ("dm", "dc", "dsa", "mtt")
PDD_BASES = (*METHODS, "delt")

REFERENCE: dict[str, dict[str, object]] = {
    "dm": {"iterations": 20000, "lr_img": 1.0, "batch_real": 256, "dsa": True},
    "dc": {"iterations": 1000, "lr_img": 0.1, "batch_real": 256, "dsa": False},
    "dsa": {"iterations": 1000, "lr_img": 0.1, "batch_real": 256, "dsa": True},
    "delt": {"iterations": 1, "dsa": False},  # one engine iteration = one DELT recover (its own preset)
    "mtt": {"iterations": 5000, "lr_img": 1000.0, "syn_steps": 30, "expert_epochs": 2, "max_start_epoch": 20,
            "lr_lr": 1e-5, "lr_teacher": 0.01, "transition_epochs": 1000, "dsa": True},
}


def resolve(method: str, dataset: str, ipc: int, stages: int, overrides: dict[str, object]) -> MethodConfig:
    """Reference defaults, then the dataset preset, then every override that is not None."""
    if method not in PDD_BASES:
        raise FastDistillError(f"unknown method {method!r}; use one of {', '.join(PDD_BASES)}")
    if method == "delt" and overrides.get("iterations") is not None:
        raise FastDistillError("--iterations does not apply to --base delt: each stage runs DELT's recover schedule "
                               "(its dataset preset)")
    values: dict[str, object] = {"method": method, "ipc": ipc, "stages": stages}
    if method in ("dc", "dsa"):
        values["outer_loop"], values["inner_loop"] = default_loops(ipc)
    values.update(REFERENCE[method])
    values.update(dataset_presets(dataset).methods.get(method, {}))
    fields = {f.name for f in dataclasses.fields(MethodConfig)}
    for key, value in overrides.items():
        if value is not None:
            if key not in fields:
                raise FastDistillError(f"unknown setting {key!r}")
            values[key] = value
    cfg = MethodConfig(**values)
    cfg.validate()
    return cfg
