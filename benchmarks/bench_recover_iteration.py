"""One DELT recover iteration, reference style vs fused: CIFAR-stem ResNet-18 teacher, batch 100, 32x32, 100 classes.

Both: frozen eval-mode teacher, active rows gathered from the 100-image parameter, loss = CE + r_bn * sum_l w_l r_l
(w_1 = 10, r_bn = 0.01), input-gradient backward, Adam(0.5, 0.9) step, per-channel clamp. Augmentation is left out
(identical in both).
- reference: BatchNorm2d forward hooks (permute/contiguous/var + autograd), rows selected with a Python list, one
  torch.optim.Adam over the batch, 3 clamps;
- fastdistill: BN layers swapped for StatBatchNorm2d (bn_stat_matching), rows gathered with a device index, one
  subtask_adam_step (compat mode: global step);
- fastdistill-bf16-cl (CUDA only): the same under bf16 autocast with channels_last teacher and images (numerics differ).
Active rows: 100 (last round) and, on CUDA, 14 (first round at IPC 50). Run:
``python -m pytest benchmarks/bench_recover_iteration.py --benchmark-enable``.
"""

from __future__ import annotations

import pytest
import torch
from kernel_timing import DEVICE, ON_CUDA, run
from torch.nn import functional as F

from fastdistill.models import build_model
from fastdistill.ops import bn_stat_matching, subtask_adam_step
from fastdistill.ops.reference import active_rows, attach_bn_hooks, hooks_loss, reference_image_update

BATCH, SIZE, CLASSES, R_BN, FIRST, LR = 100, 32, 100, 0.01, 10.0, 0.25
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
LO = [-m / s for m, s in zip(MEAN, STD, strict=True)]
HI = [(1 - m) / s for m, s in zip(MEAN, STD, strict=True)]
PROVIDERS = ["reference", "fastdistill"] + (["fastdistill-bf16-cl"] if ON_CUDA else [])
ACTIVE = [100, 14] if ON_CUDA else [100]


def teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18-cifar", CLASSES, 3, SIZE).to(DEVICE).eval().requires_grad_(False)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("active", ACTIVE)
def test_recover_iteration(benchmark, active, provider):
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 3, SIZE, SIZE, generator=gen).clamp(-1.5, 1.5).to(DEVICE)
    targets = torch.arange(BATCH, device=DEVICE) // (BATCH // 2)  # two classes per batch
    rows = [r for r in range(BATCH) if r % (BATCH // 2) < active // 2]  # the first active/2 images of each class
    model = teacher()
    if provider == "reference":
        hooks = attach_bn_hooks(model)
        inputs = images.clone().requires_grad_()
        optimiser = torch.optim.Adam([inputs], lr=LR, betas=(0.5, 0.9), eps=1e-8)

        def fn():
            out = model(active_rows(inputs, rows))
            loss = F.cross_entropy(out, targets[rows]) + R_BN * hooks_loss(hooks, FIRST)
            optimiser.zero_grad()
            loss.backward()
            reference_image_update(inputs, optimiser, LO, HI)
    else:
        low_precision = provider == "fastdistill-bf16-cl"
        fmt = torch.channels_last if low_precision else torch.contiguous_format
        model = model.to(memory_format=fmt)
        bn = bn_stat_matching(model, groups=1, first_multiplier=FIRST)
        inputs = images.contiguous(memory_format=fmt).requires_grad_()
        exp_avg, exp_avg_sq = torch.zeros_like(inputs), torch.zeros_like(inputs)
        index = torch.tensor(rows, device=DEVICE)
        active_mask = torch.zeros(BATCH, dtype=torch.bool, device=DEVICE)
        active_mask[index] = True
        step = torch.zeros(BATCH, dtype=torch.int32, device=DEVICE)
        lr = torch.full((BATCH,), LR, device=DEVICE)
        lo, hi = torch.tensor(LO, device=DEVICE), torch.tensor(HI, device=DEVICE)
        target = targets[index]

        def fn():
            with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=low_precision):
                out = model(inputs.index_select(0, index))
                loss = F.cross_entropy(out, target) + R_BN * bn.loss().sum()
            (grad,) = torch.autograd.grad(loss, inputs)
            step.add_(1)
            subtask_adam_step(inputs, grad, exp_avg, exp_avg_sq, step, lr, active_mask, lo, hi)
    fn()
    benchmark.group = f"recover iteration resnet18-cifar batch {BATCH} {SIZE}x{SIZE} active {active}"
    run(benchmark, fn, rounds=20 if ON_CUDA else 3, calls_per_round=5 if ON_CUDA else 1, op="recover_iteration",
        provider=provider, shape=[len(rows), 3, SIZE, SIZE], dtype="bfloat16" if "bf16" in provider else "float32",
        layout="channels_last" if provider.endswith("-cl") else "nchw")
