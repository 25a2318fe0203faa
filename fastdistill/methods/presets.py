"""Pinned defaults: the reference settings per method, then per-dataset presets, then the user's flags.

Reference values (spec §3): DM 20000 iterations, lr_img 1, real batch 256/class, siamese DSA; DC/DSA 1000 iterations,
lr_img 0.1, real batch 256/class, (outer, inner) loops by IPC, lr_net 0.01; MTT 5000 iterations, syn_steps 30,
expert_epochs 2, max_start_epoch 20, lr_img 1000 (no ZCA; the spec treats lr_img as tuned), lr_lr 1e-5,
lr_teacher 0.01, all images per inner step, 1000 transition epochs. The ``digits`` presets shrink iteration counts
and loops so that a whole run (distillation and evaluation) takes minutes on a CPU. Their image learning rates are
rescaled to digits' gradient sizes (measured at initialisation):
- DM: the 128-d embedding gives losses ~500x smaller than 32x32 images: lr_img 10 (at 1 the images barely move);
- DC/DSA: the gradient per pixel is ~2.5 on 64 pixels and the loss is rough (with a fixed network and real batch,
  steps of lr_img 0.01 already increase it, 0.001 decrease it; the reference's 0.1 saturates the images within an
  iteration): lr_img 0.001;
- MTT: the image gradient is ~0.04 and the LR gradient ~100: lr_img 1, lr_lr 1e-7 (the reference's 100 and 1e-5
  saturate the images and drive the learned LR negative).
"""

from __future__ import annotations

import dataclasses

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

DATASET_PRESETS: dict[tuple[str, str], dict[str, object]] = {
    ("dm", "digits"): {"iterations": 200, "batch_real": 32, "lr_img": 10.0, "pool": 4, "cond_epochs": 30},
    ("dc", "digits"): {"iterations": 10, "batch_real": 32, "lr_img": 0.001, "outer_loop": 5, "inner_loop": 5,
                       "pool": 4, "cond_epochs": 30},
    ("dsa", "digits"): {"iterations": 10, "batch_real": 32, "lr_img": 0.001, "outer_loop": 5, "inner_loop": 5,
                        "pool": 4, "cond_epochs": 30},
    ("mtt", "digits"): {"iterations": 100, "syn_steps": 10, "max_start_epoch": 5, "expert_epochs": 2,
                        "lr_img": 1.0, "lr_lr": 1e-7, "transition_epochs": 50},
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
    values.update(DATASET_PRESETS.get((method, dataset), {}))
    fields = {f.name for f in dataclasses.fields(MethodConfig)}
    for key, value in overrides.items():
        if value is not None:
            if key not in fields:
                raise FastDistillError(f"unknown setting {key!r}")
            values[key] = value
    cfg = MethodConfig(**values)
    cfg.validate()
    return cfg
