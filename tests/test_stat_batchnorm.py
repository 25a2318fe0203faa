"""StatBatchNorm2d / bn_stat_matching on real teachers against the reference forward hooks."""

from __future__ import annotations

import contextlib
import copy
import functools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fastdistill.backends import triton_importable, triton_interpret
from fastdistill.errors import FastDistillError
from fastdistill.models import build_model
from fastdistill.ops import StatBatchNorm2d, bn_stat_matching
from fastdistill.ops.reference import attach_bn_hooks, hooks_loss

needs_interpreter = pytest.mark.skipif(not (triton_importable() and triton_interpret()),
                                       reason="needs triton and TRITON_INTERPRET=1 (set by tests/conftest.py off-GPU)")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
BACKENDS = [pytest.param("torch", id="torch"),
            pytest.param("triton", id="triton-interpret", marks=[pytest.mark.interpret, needs_interpreter])]
R_BN, FIRST = 0.5, 10.0


@functools.cache
def _teacher(arch: str, image_size: int) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, 10, 3, image_size)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(m.weight, 1.0, 0.2)
            nn.init.normal_(m.bias, 0.0, 0.2)
    return model.eval().requires_grad_(False)


def frozen_teacher(arch: str, image_size: int) -> nn.Module:
    """A fresh copy of a random teacher with non-trivial BN statistics and affine parameters, eval mode, frozen."""
    return copy.deepcopy(_teacher(arch, image_size))


def reference_group_losses(model, x, y, groups):
    """The reference recipe run once per group: hooks, CE + R_BN * sum_l w_l r_l; returns (losses [G], logits)."""
    hooks = attach_bn_hooks(model)
    try:
        losses, logits = [], []
        for xg, yg in zip(x.chunk(groups), y.chunk(groups), strict=True):
            out = model(xg)
            losses.append(F.cross_entropy(out, yg) + R_BN * hooks_loss(hooks, FIRST))
            logits.append(out)
    finally:
        for h in hooks:
            h.close()
    return torch.stack(losses), torch.cat(logits)


def fused_group_losses(bn, model, x, y, groups):
    logits = model(x)
    ce = torch.stack([F.cross_entropy(o, t) for o, t in zip(logits.chunk(groups), y.chunk(groups), strict=True)])
    return ce + R_BN * bn.loss(), logits


def compare_swap_with_hooks(arch, image_size, n, groups, backend, device="cpu", dtype=torch.float32,
                            channels_last=False):
    """Swapped model vs the hook recipe: fp32 within rtol = atol = 1e-5 (of the largest value); low precision by the
    flash-attention rule. The reference runs in float64 on CPU, and on CUDA in fp32 with the same convolutions (TF32
    off, same memory format: cuDNN's fp32 algorithms alone can differ from float64 by more than 1e-5). Low precision
    runs on CUDA only: the Triton interpreter rounds fp32 -> bf16 stores toward zero, not to nearest."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ref_dtype = torch.float64 if device == "cpu" else torch.float32
    model = frozen_teacher(arch, image_size).to(device, memory_format=fmt)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, image_size, image_size, generator=gen).to(device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (n,), generator=gen).to(device)
    weights = (torch.randn(groups, generator=gen) + 1.5).to(device)  # upstream gradient of the per-group losses

    ref_model = frozen_teacher(arch, image_size).to(device, ref_dtype, memory_format=fmt)
    xr = x.to(ref_dtype).requires_grad_()
    ref_losses, ref_logits = reference_group_losses(ref_model, xr, y, groups)
    (ref_grad,) = torch.autograd.grad((ref_losses * weights.to(ref_dtype)).sum(), xr)

    xf = x.clone().requires_grad_()
    with bn_stat_matching(model, groups=groups, first_multiplier=FIRST, backend=backend) as bn:
        with torch.autocast(device, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext():
            losses, logits = fused_group_losses(bn, model, xf, y, groups)
        (grad,) = torch.autograd.grad((losses * weights).sum(), xf)
    assert all(type(m) is not StatBatchNorm2d for m in model.modules())
    if dtype == torch.float32:
        for ours, ref in ((logits, ref_logits), (losses, ref_losses), (grad, ref_grad)):
            torch.testing.assert_close(ours.to(ref_dtype), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
        return
    # Low precision: at most 2x the error of the hook recipe run under the same autocast (flash-attention rule).
    xl = x.clone().requires_grad_()
    with torch.autocast(device, dtype=dtype):
        low_losses, low_logits = reference_group_losses(model, xl, y, groups)
    (low_grad,) = torch.autograd.grad((low_losses * weights).sum(), xl)
    for name, ours, low, ref in (("logits", logits, low_logits, ref_logits), ("losses", losses, low_losses, ref_losses),
                                 ("grad", grad, low_grad, ref_grad)):
        err, low_err = (ours.double() - ref).abs().max().item(), (low.double() - ref).abs().max().item()
        assert err <= 2 * low_err + 1e-6 * ref.abs().max().item(), f"{name}: {err:.3g} vs 2 x {low_err:.3g}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("arch,image_size,n,groups", [("convnet3-bn", 8, 6, 2), ("convnet4-bn", 16, 5, 1),
                                                      ("resnet18-cifar", 8, 2, 2)], ids=["convnet3", "convnet4", "r18"])
def test_swap_matches_forward_hooks(arch, image_size, n, groups, backend):
    compare_swap_with_hooks(arch, image_size, n, groups, backend)


def test_swap_and_restore_keep_the_model_intact():
    model = frozen_teacher("resnet18-cifar", 8)
    originals = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    with bn_stat_matching(model) as bn:
        assert len(bn.layers) == len(originals) == 20
        swapped = dict(model.named_modules())
        for (name, orig), layer in zip(originals, bn.layers, strict=True):  # model.modules() order, shared tensors
            assert swapped[name] is layer
            assert layer.running_mean is orig.running_mean and layer.weight is orig.weight
            assert not layer.weight.requires_grad
        assert list(model.state_dict()) == keys
        torch.testing.assert_close(model(x), expected)
    assert [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)] == originals
    assert torch.equal(model(x), expected)


def test_loss_weights_first_layer():
    model = frozen_teacher("convnet3-bn", 8)
    with bn_stat_matching(model, groups=2, first_multiplier=7.0) as bn:
        model(torch.randn(4, 3, 8, 8))
        per_layer = bn.layer_losses()
        assert len(per_layer) == 3 and all(t.shape == (2,) for t in per_layer)
        torch.testing.assert_close(bn.loss(), 7.0 * per_layer[0] + per_layer[1] + per_layer[2])
        bn.groups = 4
        model(torch.randn(4, 3, 8, 8))
        assert bn.loss().shape == (4,)


def test_shared_bn_module_is_swapped_everywhere():
    bn_layer = nn.BatchNorm2d(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), bn_layer, nn.Conv2d(4, 4, 1), bn_layer).eval()
    model.requires_grad_(False)
    with bn_stat_matching(model) as bn:
        assert len(bn.layers) == 1 and model[1] is model[3] is bn.layers[0]
    assert model[1] is model[3] is bn_layer


@pytest.mark.parametrize("problem", ["train_mode", "trainable", "no_forward", "no_bn", "groups"])
def test_misuse_raises(problem):
    model = frozen_teacher("convnet3-bn", 8)
    x = torch.randn(4, 3, 8, 8)
    if problem == "no_bn":
        with pytest.raises(FastDistillError):
            bn_stat_matching(nn.Sequential(nn.Conv2d(3, 3, 1)))
        return
    with bn_stat_matching(model, groups=3 if problem == "groups" else 1) as bn, pytest.raises(FastDistillError):
        if problem == "train_mode":
            model.train()
        if problem == "trainable":
            model.requires_grad_(True)
        if problem == "no_forward":
            bn.loss()
        model(x)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype,channels_last", [(torch.float32, False), (torch.float32, True),
                                                 (torch.bfloat16, True), (torch.bfloat16, False)],
                         ids=["fp32", "fp32-cl", "bf16-cl", "bf16"])
@pytest.mark.parametrize("arch,image_size,n,groups", [("resnet18-cifar", 32, 32, 4), ("convnet4-bn", 64, 50, 2)],
                         ids=["r18-32", "convnet4-64"])
def test_cuda_swap_matches_forward_hooks(arch, image_size, n, groups, dtype, channels_last, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # fp32 means fp32 convolutions here
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    if dtype != torch.float32:  # the hook recipe runs per group; bf16 convolutions round differently per batch size
        groups = 1
    compare_swap_with_hooks(arch, image_size, n, groups, None, "cuda", dtype, channels_last)
