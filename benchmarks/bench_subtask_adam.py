"""subtask_adam_step vs the reference per-round update (shared torch.optim.Adam over the batch + 3 per-channel clamps).

Settings (fp32 image parameters, 3 channels): one 100-image batch at 32x32, 64x64 and 224x224 in the middle of an
EarlyLate schedule (52 of 100 rows active: the reference still updates the whole batch), and 16 independent 100-image
batches at 32x32 (1600 rows): the reference steps 16 optimisers and clamps each, subtask_adam_step makes one launch.
Run: ``python -m pytest benchmarks/bench_subtask_adam.py --benchmark-enable``.
"""

from __future__ import annotations

import pytest
import torch
from kernel_timing import DEVICE, ON_CUDA, run

from fastdistill.ops import subtask_adam_step
from fastdistill.ops.reference import reference_image_update

SETTINGS = {  # name: (batches, images per batch, image size)
    "1x100-32px": (1, 100, 32),
    "1x100-64px": (1, 100, 64),
    "1x100-224px": (1, 100, 224),
    "16x100-32px": (16, 100, 32),
}
ACTIVE_PER_BATCH = 52  # EarlyLate round 3 of 8 at IPC 50 (2 classes x 26 images)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LO = [-m / s for m, s in zip(MEAN, STD, strict=True)]
HI = [(1 - m) / s for m, s in zip(MEAN, STD, strict=True)]


@pytest.mark.parametrize("provider", ["reference", "fastdistill"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_subtask_adam(benchmark, setting, provider):
    batches, per_batch, size = SETTINGS[setting]
    n = batches * per_batch
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=gen).clamp(-1.5, 1.5).to(DEVICE)
    grad = torch.randn(n, 3, size, size, generator=gen).to(DEVICE)
    active = (torch.arange(n) % per_batch < ACTIVE_PER_BATCH).to(DEVICE)
    grad[~active] = 0  # what the reference's slicing leaves for rows that have not joined
    if provider == "reference":
        params = [chunk.clone().requires_grad_() for chunk in images.chunk(batches)]
        optimisers = []
        for p, g in zip(params, grad.chunk(batches), strict=True):
            p.grad = g.clone()
            optimisers.append(torch.optim.Adam([p], lr=0.25, betas=(0.5, 0.9), eps=1e-8))

        def fn():
            for p, opt in zip(params, optimisers, strict=True):
                reference_image_update(p, opt, LO, HI)
    else:
        param, m, v = images.clone(), torch.zeros_like(images), torch.zeros_like(images)
        step = torch.full((n,), 7, dtype=torch.int32, device=DEVICE)
        lr = torch.full((n,), 0.25, device=DEVICE)
        lo, hi = torch.tensor(LO, device=DEVICE), torch.tensor(HI, device=DEVICE)

        def fn():
            subtask_adam_step(param, grad, m, v, step, lr, active, lo, hi)
    fn()
    benchmark.group = f"subtask_adam_step {setting}"
    run(benchmark, fn, rounds=50 if ON_CUDA else (5 if size == 224 else 20), op="subtask_adam_step",
        provider=provider, shape=[n, 3, size, size], dtype="torch.float32", layout="nchw",
        bytes=7 * 4 * n * 3 * size * size)  # fused: read p, g, m, v; write p, m, v
