"""The recover loop: optimise groups of images against a frozen teacher (CE + r_bn * BN-statistic loss).

One call optimises ``groups`` independent groups (reference batches) that share one EarlyLate schedule: their active
rows go through the teacher together, the BN-statistic loss is computed per group (fused BatchNorm), CE is averaged
within each group, and one ``subtask_adam_step`` updates every active row (global-step bias correction, as the
reference's single Adam per batch) and clamps pixels to their valid range. Gradients equal those of separate runs, and
each group draws its crops, flips and jitter from its own generator, so a group's result does not depend on the
others in its launch.

``cfg.precision == "bf16"`` runs the teacher's forward (and so its backward) under bf16 autocast; the images, their
Adam moments, the BN statistics and their loss, and the cross-entropy stay fp32. ``cfg.channels_last`` feeds the
teacher channels-last images (and converts its weights to channels-last, in place).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fastdistill.augment.groups import jitter_groups, random_crop_flip_groups, reference_crop_flip
from fastdistill.errors import FastDistillError
from fastdistill.methods.delt.config import DELTConfig
from fastdistill.methods.delt.schedule import GroupSchedule, cosine_lr, min_crop_scale
from fastdistill.ops import bn_stat_matching, subtask_adam_step

# The reference recover's optimizer (spec delt.md §4.3 step 7): Adam betas (0.5, 0.9), eps 1e-8.
ADAM_BETAS, ADAM_EPS = (0.5, 0.9), 1e-8
# How often the loss is checked for non-finite values (each check synchronises a GPU) and shown on the progress bar.
CHECK_EVERY_CUDA, SHOW_EVERY = 50, 50


def recover(x0: torch.Tensor, labels: torch.Tensor, groups: int, schedule: GroupSchedule, teacher: nn.Module,
            cfg: DELTConfig, bounds: tuple[torch.Tensor, torch.Tensor], generators: list[torch.Generator],
            on_iteration: Callable[[int, float], None] | None = None, progress: bool = True,
            desc: str = "recover") -> torch.Tensor:
    """Optimise ``x0`` ([groups * B, C, H, W], normalized) and return the final images (same layout).

    ``generators``: one CPU generator per group (its crops, flips and jitter)."""
    if len(generators) != groups:
        raise ValueError(f"recover needs one generator per group: {groups} groups, {len(generators)} generators")
    device = x0.device
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if cfg.channels_last:
        teacher.to(memory_format=torch.channels_last)
    n, _, height, _ = x0.shape
    per = n // groups
    x = x0.detach().clone().contiguous()
    exp_avg, exp_avg_sq, grad_buf = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)
    lo, hi = (b.to(device=device, dtype=x.dtype) for b in bounds)
    rounds = [torch.tensor([g * per + r for g in range(groups) for r in rows], device=device)
              for rows in schedule.active]
    # Adam rows: every row that has joined so far. A row whose class ran out of rounds (min_iterations < iterations)
    # keeps moving on its moments with a zero gradient, as in the reference's single Adam over the batch.
    masks, seen = [], torch.zeros(n, dtype=torch.bool, device=device)
    for idx in rounds:
        seen = seen.clone()
        seen[idx] = True
        masks.append(seen)
    rows_leave = any(int(m.sum()) != len(i) for m, i in zip(masks, rounds, strict=True))
    total = schedule.total_iterations
    step = torch.zeros(n, dtype=torch.int32, device=device)
    lr_rows = torch.empty(n, dtype=torch.float32, device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    check_every = 1 if device.type == "cpu" else CHECK_EVERY_CUDA
    bar = tqdm(range(total), desc=desc, disable=not progress, leave=False)
    with bn_stat_matching(teacher, groups=groups, first_multiplier=cfg.first_bn_multiplier,
                          backend=None if cfg.backend == "auto" else cfg.backend) as bn:
        for t in bar:
            r = t // schedule.round_iterations
            idx, mask = rounds[r], masks[r]
            min_crop = min_crop_scale(t, total, cfg.milestone, cfg.crop, cfg.crop_floor)
            xa = x.index_select(0, idx).requires_grad_(True)
            if cfg.mode == "compat":
                xj = reference_crop_flip(xa, height, min_crop, cfg.flip)
            else:
                xj = random_crop_flip_groups(xa, min_crop, cfg.flip, generators)
            if cfg.jitter:
                shifts = [tuple(torch.randint(0, cfg.jitter + 1, (2,), generator=g).tolist()) for g in generators]
                xj = jitter_groups(xj, groups, shifts)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                logits = teacher(xj.contiguous(memory_format=layout))
            ce = F.cross_entropy(logits.float(), labels.index_select(0, idx), reduction="none").view(groups, -1).mean(1)
            loss = ce + cfg.r_bn * bn.loss()
            (grad,) = torch.autograd.grad(loss.sum(), xa)
            if rows_leave:
                grad_buf.zero_()
            grad_buf.index_copy_(0, idx, grad)
            step.fill_(t + 1)
            lr_rows.fill_(cosine_lr(cfg.lr, t, total))
            subtask_adam_step(x, grad_buf, exp_avg, exp_avg_sq, step, lr_rows, mask, lo, hi, beta1=ADAM_BETAS[0],
                              beta2=ADAM_BETAS[1], eps=ADAM_EPS, backend=None if cfg.backend == "auto" else cfg.backend)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss).all(), t, first_bad)
            if (t + 1) % check_every == 0 or t + 1 == total:
                if int(first_bad) >= 0:
                    raise FastDistillError(f"non-finite loss at iteration {int(first_bad)} of {desc}; lower --lr or "
                                           "--r-bn, or check the teacher")
                if on_iteration is not None or (t + 1) % SHOW_EVERY == 0:
                    value = float(loss.detach().mean())
                    bar.set_postfix(loss=f"{value:.3f}")
                    if on_iteration is not None:
                        on_iteration(t, value)
    return x
