"""bn_stat_loss forward + backward vs the reference BN-statistic hook, at ResNet-18 BN-input shapes (batch 100).

Shapes: CIFAR-stem ResNet-18 at 32x32 and 64x64 (stem/layer1 and layer4 BN inputs) and torchvision ResNet-18 at 224x224
(stem 112x112, layer1 56x56, layer4 7x7). On CPU the 224x224 stem shape (321 MB per tensor in fp32) is left out unless
``FASTDISTILL_BENCH_LARGE=1``. On CUDA also bf16 channels_last, and a "copy" provider (x -> new tensor) per shape as
the bandwidth yardstick. Run: ``python -m pytest benchmarks/bench_bn_stat_loss.py --benchmark-enable``.
"""

from __future__ import annotations

import os

import pytest
import torch
from kernel_timing import DEVICE, ON_CUDA, run

from fastdistill.ops import bn_stat_loss
from fastdistill.ops.reference import reference_bn_loss

SHAPES = {
    "r18c32-layer1": (100, 64, 32, 32),
    "r18c32-layer4": (100, 512, 4, 4),
    "r18c64-layer1": (100, 64, 64, 64),
    "r18-224-stem": (100, 64, 112, 112),
    "r18-224-layer1": (100, 64, 56, 56),
    "r18-224-layer4": (100, 512, 7, 7),
}
if not ON_CUDA and os.environ.get("FASTDISTILL_BENCH_LARGE") != "1":
    del SHAPES["r18-224-stem"]
VARIANTS = [(torch.float32, False)] + ([(torch.bfloat16, True)] if ON_CUDA else [])
PROVIDERS = ["reference", "fastdistill"] + (["copy"] if ON_CUDA else [])


def make_case(shape, dtype, channels_last):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=gen) * 1.3 + 0.2).to(DEVICE, dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    return x.requires_grad_(), torch.randn(c, generator=gen).to(DEVICE) * 0.3, torch.rand(c, generator=gen).to(DEVICE)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype,channels_last", VARIANTS, ids=lambda v: str(v).replace("torch.", "") if
                         isinstance(v, torch.dtype) else ("cl" if v else "nchw"))
@pytest.mark.parametrize("shape_id", list(SHAPES))
def test_bn_stat_loss(benchmark, shape_id, dtype, channels_last, provider):
    shape = SHAPES[shape_id]
    x, running_mean, running_var = make_case(shape, dtype, channels_last)
    if provider == "reference":
        def fn():
            return torch.autograd.grad(reference_bn_loss(x, running_mean, running_var), x)
    elif provider == "fastdistill":
        def fn():
            return torch.autograd.grad(bn_stat_loss(x, running_mean, running_var).sum(), x)
    else:
        def fn():
            return x.detach().clone()
    fn()
    layout = "channels_last" if channels_last else "nchw"
    benchmark.group = f"bn_stat_loss fwd+bwd {shape_id} {str(dtype)[6:]} {layout}"
    nbytes = x.numel() * x.element_size()
    big = x.numel() > 20_000_000
    calls = (5 if big else 20) if ON_CUDA else 1
    run(benchmark, fn, rounds=(30 if ON_CUDA else (3 if big else 10)), calls_per_round=calls,
        op="bn_stat_loss", provider=provider, shape=list(shape), dtype=str(dtype), layout=layout,
        # fused fwd+bwd: read x (statistics), read x + write dx (backward); copy: read + write
        bytes=(2 if provider == "copy" else 3) * nbytes)
