"""StatBatchNorm2d / bn_stat_matching on real teachers against the reference forward hooks, and stat_batch_norm at
the BN-input shapes of ResNet-18 at 32x32 against float64."""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fastdistill.backends import triton_importable, triton_interpret
from fastdistill.errors import FastDistillError
from fastdistill.models import build_model
from fastdistill.ops import StatBatchNorm2d, bn_stat_matching, stat_batch_norm, subtask_adam_step
from fastdistill.ops.reference import reference_bn_stat_loss

needs_interpreter = pytest.mark.skipif(not (triton_importable() and triton_interpret()),
                                       reason="needs triton and TRITON_INTERPRET=1 (set by tests/conftest.py off-GPU)")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
BACKENDS = [pytest.param("torch", id="torch"),
            pytest.param("triton", id="triton-interpret", marks=[pytest.mark.interpret, needs_interpreter])]
R_BN, FIRST = 0.5, 10.0
bn_stat_loss_triton = importlib.import_module("fastdistill.ops.bn_stat_loss_triton")


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
        for name, child in m.named_children():
            if isinstance(child, nn.ReLU):
                setattr(m, name, nn.ELU(inplace=child.inplace))
    return model.eval().requires_grad_(False)


def frozen_teacher(arch: str, image_size: int) -> nn.Module:
    """A fresh copy of a random teacher with non-trivial BN statistics and affine parameters, eval mode, frozen.

    Its ReLUs are ELUs (in place, as the ReLUs were): a ReLU input within rounding of 0 takes a different branch in
    two correct implementations, which moves the input gradient by O(1%) of its maximum around that pixel (one such
    unit in ResNet-18 at 32x32 gave 1e-3 against 0.1 on CUDA, and 8.6e-4 relative in the interpreter). ELU's
    derivative is continuous, so rounding differences stay rounding-sized and 1e-5 stays a meaningful tolerance.
    """
    return copy.deepcopy(_teacher(arch, image_size))


def reference_group_losses(model, x, y, groups):
    """The reference recipe: BN forward hooks with the reference maths per group of rows (in eval mode the same as
    running the groups one by one, but with the same convolutions as the fused run) and, per group,
    CE + R_BN * sum_l w_l r_l. Returns (losses [G], logits)."""
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    r = {}
    handles = [m.register_forward_hook(lambda m, inputs, _: r.__setitem__(m, reference_bn_stat_loss(
        inputs[0], m.running_mean, m.running_var, groups))) for m in layers]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    bn = sum(r[m] * (FIRST if i == 0 else 1.0) for i, m in enumerate(layers))
    ce = torch.stack([F.cross_entropy(o, t) for o, t in zip(logits.chunk(groups), y.chunk(groups), strict=True)])
    return ce + R_BN * bn, logits


def fused_group_losses(bn, model, x, y, groups):
    logits = model(x)
    ce = torch.stack([F.cross_entropy(o, t) for o, t in zip(logits.chunk(groups), y.chunk(groups), strict=True)])
    return ce + R_BN * bn.loss(), logits


def compare_swap_with_hooks(arch, image_size, n, groups, backend, device="cpu", dtype=torch.float32,
                            channels_last=False):
    """Swapped model vs the hook recipe: fp32 within rtol = atol = 1e-5 (of the largest value); low precision by the
    flash-attention rule. The reference runs in float64 on CPU, and on CUDA in fp32 with the same convolutions (TF32
    off, same memory format and batch: cuDNN's fp32 algorithms alone can differ from float64 by more than 1e-5)."""
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


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("arch,image_size,n,groups", [("convnet3-bn", 8, 6, 2), ("resnet18-cifar", 8, 4, 2)],
                         ids=["convnet3", "r18"])
def test_swap_bf16_autocast_matches_forward_hooks(arch, image_size, n, groups, channels_last):
    """CPU bf16 autocast, torch backend (the interpreter's bf16 stores truncate, so its numerics are not checked)."""
    compare_swap_with_hooks(arch, image_size, n, groups, "torch", "cpu", torch.bfloat16, channels_last)


def layout(t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "expanded":  # stride-0 H and W, as a mean's gradient arrives
        return t.mean((2, 3), keepdim=True).expand_as(t)
    return t.contiguous(memory_format=torch.channels_last if kind == "cl" else torch.contiguous_format)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
def test_bf16_recover_step(backend, channels_last):
    """The recover iteration's fused path under bf16 autocast (the CUDA benchmark's fastdistill-bf16-cl): active rows
    gathered with index_select from an fp32 image batch, swapped teacher, CE + BN loss, input gradient (which autograd
    returns NCHW even for channels_last images), subtask_adam_step. Checks dtypes and that only active rows move."""
    model = frozen_teacher("convnet3-bn", 8).to(memory_format=torch.channels_last if channels_last else None)
    gen = torch.Generator().manual_seed(2)
    images = layout(torch.randn(6, 3, 8, 8, generator=gen), "cl" if channels_last else "nchw").requires_grad_()
    before = images.detach().clone()
    index = torch.tensor([0, 2, 3, 5])
    seen = []
    with bn_stat_matching(model, groups=2, backend=backend) as bn:
        bn.layers[0].register_forward_hook(lambda m, inputs, y: seen.append((inputs[0].dtype, y.dtype)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(images.index_select(0, index))
            loss = F.cross_entropy(logits, torch.tensor([1, 2, 3, 4])) + R_BN * bn.loss().sum()
        assert seen == [(torch.bfloat16, torch.bfloat16)] and bn.loss().dtype == torch.float32
        (grad,) = torch.autograd.grad(loss, images)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
    active = torch.zeros(6, dtype=torch.bool)
    active[index] = True
    exp_avg, exp_avg_sq = torch.zeros_like(images), torch.zeros_like(images)
    subtask_adam_step(images, grad, exp_avg, exp_avg_sq, torch.ones(6, dtype=torch.int32), torch.full((6,), 0.1),
                      active, [-2.0] * 3, [2.0] * 3, backend=backend)
    assert torch.equal(images[~active], before[~active]) and (images[active] != before[active]).any()
    assert torch.isfinite(images).all()


# BN inputs of ResNet-18 at 32x32 (stem/layer1 ... layer4) at batch 32 in 4 groups: where the CUDA swap test failed.
LAYER_SHAPES = [(64, 32), (128, 16), (256, 8), (512, 4)]
LAYOUTS = [("nchw", "nchw"), ("cl", "cl"), ("nchw", "cl"), ("cl", "expanded")]


def check_layer_against_float64(c, size, x_layout, dy_layout, backend, device="cpu", n=32, groups=4):
    """stat_batch_norm's y, loss and input gradient (random upstream gradients of both outputs, dy in its own layout)
    against F.batch_norm + the reference hook maths in float64: rtol = atol = 1e-5 (of the largest value)."""
    gen = torch.Generator().manual_seed(c)
    x = torch.randn(n, c, size, size, generator=gen) * 1.3 + 0.4
    dy = torch.randn(n, c, size, size, generator=gen) * 0.1
    rm, w, b = (torch.randn(c, generator=gen) * 0.3 for _ in range(3))
    rv = torch.rand(c, generator=gen) + 0.5
    w += 1.0
    grad_loss = torch.randn(groups, generator=gen) + 1.5
    xf = layout(x, x_layout).to(device).requires_grad_()
    y, loss = stat_batch_norm(xf, *(t.to(device) for t in (rm, rv, w, b)), 1e-5, groups, backend)
    (dx,) = torch.autograd.grad((y, loss), xf, (layout(dy, dy_layout).to(device), grad_loss.to(device)))
    assert y.stride() == xf.stride() and dx.stride() == xf.stride()
    xr = x.double().requires_grad_()
    yr = F.batch_norm(xr, rm.double(), rv.double(), w.double(), b.double(), False, 0.0, 1e-5)
    lr = reference_bn_stat_loss(xr, rm.double(), rv.double(), groups)
    (dxr,) = torch.autograd.grad((yr, lr), xr, (layout(dy, dy_layout).double(), grad_loss.double()))
    for ours, ref in ((y, yr), (loss, lr), (dx, dxr)):
        torch.testing.assert_close(ours.cpu().double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


# (C, size, N, groups, x layout, dy layout): the interpreter runs a program at a time, so fewer rows than on CUDA
# where the GPU plan has many programs (NCHW 64x32x32: tiles of 2 channels x the whole map, one row per split)
INTERPRET_LAYER_CASES = [(64, 32, 4, 2, "nchw", "cl"), (64, 32, 4, 2, "cl", "expanded"), (128, 16, 8, 2, "cl", "nchw"),
                         (256, 8, 8, 2, "nchw", "nchw"), (512, 4, 32, 4, "nchw", "nchw"), (512, 4, 32, 4, "cl", "cl")]


@pytest.mark.interpret
@needs_interpreter
@pytest.mark.parametrize("c,size,n,groups,x_layout,dy_layout", INTERPRET_LAYER_CASES,
                         ids=["{}x{}x{}-N{}G{}-{}-{}".format(c, s, s, *rest) for c, s, *rest in INTERPRET_LAYER_CASES])
def test_layer_gpu_plan_matches_float64(c, size, n, groups, x_layout, dy_layout, monkeypatch):
    """The Triton kernels with the launch plan of an H100 (132 SMs: GPU tiles, splits and one row per backward
    program), run by the interpreter."""
    monkeypatch.setattr(bn_stat_loss_triton, "_sm_count", lambda device: 132)
    check_layer_against_float64(c, size, x_layout, dy_layout, "triton", n=n, groups=groups)


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
    compare_swap_with_hooks(arch, image_size, n, groups, None, "cuda", dtype, channels_last)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("x_layout,dy_layout", LAYOUTS, ids=["-".join(v) for v in LAYOUTS])
@pytest.mark.parametrize("c,size", LAYER_SHAPES, ids=[f"{c}x{s}x{s}" for c, s in LAYER_SHAPES])
def test_cuda_layer_matches_float64(c, size, x_layout, dy_layout):
    check_layer_against_float64(c, size, x_layout, dy_layout, None, "cuda")


def _compiled_matches_eager(device: str, backend: str, compile_backend: str) -> None:
    """torch.compile(fullgraph=True) of a swapped model's CE + BN loss: no graph break, and loss and input gradient
    equal eager; an in-place change of a running statistic after compiling is seen by the compiled function."""
    model = frozen_teacher("convnet3-bn", 8).to(device)
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(5)).to(device).requires_grad_()
    y = torch.tensor([1, 2, 3, 4, 5, 6], device=device)
    with bn_stat_matching(model, groups=2, backend=backend) as bn:
        def step(images):
            return F.cross_entropy(model(images), y) + R_BN * bn.loss().sum()

        torch._dynamo.reset()
        explained = torch._dynamo.explain(step)(x)
        assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
        compiled = torch.compile(step, fullgraph=True, backend=compile_backend)
        for _ in range(2):  # the second round after an in-place change of a BN buffer (cache invalidation)
            eager = step(x)
            (g_eager,) = torch.autograd.grad(eager, x)
            fast = compiled(x)
            (g_fast,) = torch.autograd.grad(fast, x)
            torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(g_fast, g_eager, rtol=1e-5, atol=1e-6)
            model.body[1].running_mean.add_(0.25)  # the first BN layer (shared with its StatBatchNorm2d)
    torch._dynamo.reset()


def test_compile_fullgraph_matches_eager():
    _compiled_matches_eager("cpu", "torch", "aot_eager")


@pytest.mark.cuda
@needs_cuda
def test_cuda_compile_fullgraph_matches_eager():
    _compiled_matches_eager("cuda", None, "inductor")
