"""bn_stat_loss: values and input gradients against the reference hook maths, per backend, dtype, layout and group."""

from __future__ import annotations

import importlib

import pytest
import torch

from fastdistill.backends import triton_importable, triton_interpret
from fastdistill.errors import FastDistillError
from fastdistill.ops import bn_stat_loss
from fastdistill.ops.reference import reference_bn_stat_loss
from fastdistill.ops.registry import backend_for

bn_stat_loss_module = importlib.import_module("fastdistill.ops.bn_stat_loss")  # the package re-exports the function
bn_stat_loss_triton = importlib.import_module("fastdistill.ops.bn_stat_loss_triton")
needs_interpreter = pytest.mark.skipif(not (triton_importable() and triton_interpret()),
                                       reason="needs triton and TRITON_INTERPRET=1 (set by tests/conftest.py off-GPU)")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
BACKENDS = [pytest.param("torch", id="torch"),
            pytest.param("triton", id="triton-interpret", marks=[pytest.mark.interpret, needs_interpreter])]

# (N, C, H, W, groups, channels_last): C=1, C=3, H=W=7, N not divisible by 8, groups > 1, H*W=1, odd H != W.
CASES = [
    (5, 1, 7, 7, 1, False),
    (6, 3, 7, 7, 3, True),
    (10, 20, 5, 3, 2, True),
    (9, 33, 2, 3, 3, False),
    (4, 40, 1, 1, 2, False),
]
CUDA_CASES = [
    (100, 64, 32, 32, 1, False),
    (100, 64, 32, 32, 4, True),
    (48, 128, 16, 16, 3, False),
    (30, 512, 7, 7, 3, True),
    (7, 3, 9, 11, 7, False),
]


def case_id(case) -> str:
    return "N{}C{}H{}W{}G{}{}".format(*case[:5], "-cl" if case[5] else "")


def make_inputs(n, c, h, w, groups, channels_last, dtype, device, seed=0):
    """x with a non-zero mean, running stats away from it, and a random upstream gradient (never all ones)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, h, w, generator=gen) * 1.5 + 0.3).to(device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    running_mean = (torch.randn(c, generator=gen) * 0.5).to(device)
    running_var = (torch.rand(c, generator=gen) + 0.5).to(device)
    grad_out = (torch.randn(groups, generator=gen) * 2.0 + 0.5).to(device)
    return x, running_mean, running_var, grad_out


def loss_and_grad(fn, x, grad_out):
    x = x.detach().requires_grad_()
    loss = fn(x)
    (grad,) = torch.autograd.grad(loss, x, grad_out.to(loss.dtype))
    return loss.detach(), grad


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


# Tolerance table (engineering spec section 6). fp32: rtol = 1e-5 and atol = 1e-5 x the largest reference value, against
# a float64 run of the reference. Low precision (flash-attention rule): max error against the float64 reference at most
# FACTOR x the max error of the same reference run entirely in that dtype, plus 1e-6 x the largest value (for outputs
# the low-precision run gets exactly right).
FP32_TOL = {"rtol": 1e-5, "atol_scale": 1e-5}
LOW_PRECISION_FACTOR = {torch.bfloat16: 2.0, torch.float16: 2.0}


def check_against_reference(x, running_mean, running_var, grad_out, groups, backend):
    loss, grad = loss_and_grad(lambda t: bn_stat_loss(t, running_mean, running_var, groups, backend=backend), x,
                               grad_out)
    assert loss.dtype == torch.float32 and loss.shape == (groups,)
    assert grad.dtype == x.dtype and grad.shape == x.shape and grad.stride() == x.stride()
    ref_loss, ref_grad = loss_and_grad(
        lambda t: reference_bn_stat_loss(t, running_mean.double(), running_var.double(), groups), x.double(), grad_out)
    if x.dtype == torch.float32:
        for ours, ref in ((loss, ref_loss), (grad, ref_grad)):
            scale = ref.abs().max().item()
            torch.testing.assert_close(ours.double(), ref, rtol=FP32_TOL["rtol"], atol=FP32_TOL["atol_scale"] * scale)
        return
    low_loss, low_grad = loss_and_grad(
        lambda t: reference_bn_stat_loss(t, running_mean.to(x.dtype), running_var.to(x.dtype), groups), x,
        grad_out.to(x.dtype))
    factor = LOW_PRECISION_FACTOR[x.dtype]
    for name, ours, low, ref in (("loss", loss, low_loss, ref_loss), ("grad", grad, low_grad, ref_grad)):
        bound = factor * max_err(low, ref) + 1e-6 * ref.abs().max().item()
        err = max_err(ours, ref)
        assert err <= bound, f"{name}: error {err:.3g} > {bound:.3g} ({factor} x the {x.dtype} reference's)"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference(case, dtype, backend):
    *shape, groups, channels_last = case
    x, rm, rv, grad_out = make_inputs(*shape, groups, channels_last, dtype, "cpu")
    check_against_reference(x, rm, rv, grad_out, groups, backend)


# GPU launch plans (H100, 132 SMs) in the interpreter: NCHW tiles of 2 channels x 1024 positions over a 64x64 map with
# one row per split (2 splits per group), channels_last tiles of 128 channels (3 channel blocks), and channels_last
# tiles of 64 channels x 32 positions with the 32x64 map in 4 chunks (forward and backward programs).
GPU_PLAN_CASES = [(2, 16, 64, 64, 1, False), (3, 300, 2, 3, 3, True), (2, 64, 32, 64, 1, True)]


@pytest.mark.interpret
@needs_interpreter
@pytest.mark.parametrize("case", GPU_PLAN_CASES, ids=case_id)
def test_gpu_plan_matches_reference(case, monkeypatch):
    monkeypatch.setattr(bn_stat_loss_triton, "_sm_count", lambda device: 132)
    *shape, groups, channels_last = case
    x, rm, rv, grad_out = make_inputs(*shape, groups, channels_last, torch.float32, "cpu", seed=4)
    check_against_reference(x, rm, rv, grad_out, groups, "triton")


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16(backend):
    x, rm, rv, grad_out = make_inputs(6, 5, 7, 7, 2, False, torch.float16, "cpu", seed=3)
    check_against_reference(x, rm, rv, grad_out, 2, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_norm_gives_zero_gradient_not_nan(backend):
    """Batch statistics equal to the running ones (exactly representable): loss 0, gradient exactly 0."""
    running_mean = torch.tensor([0.5, -2.0, 0.25])
    x = running_mean.view(1, 3, 1, 1).expand(6, 3, 7, 7).contiguous()
    loss, grad = loss_and_grad(lambda t: bn_stat_loss(t, running_mean, torch.zeros(3), 2, backend=backend), x,
                               torch.tensor([1.5, -0.5]))
    assert torch.equal(loss, torch.zeros(2))
    assert torch.equal(grad, torch.zeros_like(x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_mean_term_keeps_variance_gradient(backend):
    """||d_mu|| = 0 exactly (x = [a, -a] on a dyadic grid: every sum is exact): only the variance term remains."""
    _, _, rv, grad_out = make_inputs(4, 3, 4, 4, 1, False, torch.float32, "cpu", seed=5)
    a = torch.randint(-8, 9, (2, 3, 4, 4), generator=torch.Generator().manual_seed(5)) / 4
    x = torch.cat([a, -a])
    running_mean = torch.zeros(3)
    loss, grad = loss_and_grad(lambda t: bn_stat_loss(t, running_mean, rv, backend=backend), x, grad_out)
    ref_loss, ref_grad = loss_and_grad(lambda t: reference_bn_stat_loss(t, running_mean, rv), x, grad_out)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6 * ref_grad.abs().max().item())


@pytest.mark.parametrize("bad", ["groups", "dims", "stats_shape", "dtype"])
def test_invalid_inputs_raise(bad):
    x, rm, rv = torch.randn(6, 3, 4, 4), torch.zeros(3), torch.ones(3)
    args = {"groups": (x, rm, rv, 4), "dims": (x[0], rm, rv, 1), "stats_shape": (x, rm[:2], rv, 1),
            "dtype": (x.to(torch.int32), rm, rv, 1)}[bad]
    with pytest.raises(FastDistillError):
        bn_stat_loss(*args)


def test_cpu_default_is_torch_even_under_interpreter(monkeypatch):
    monkeypatch.delenv("FASTDISTILL_BACKEND", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backend_for("bn_stat_loss", "cpu") == "torch"
    assert backend_for("subtask_adam_step", "cpu") == "torch"


def test_forcing_unavailable_backend_raises(monkeypatch):
    x, rm, rv = torch.randn(4, 3, 4, 4), torch.zeros(3), torch.ones(3)
    with pytest.raises(FastDistillError, match="no 'cpp' backend"):
        bn_stat_loss(x, rm, rv, backend="cpp")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # Triton on a CPU tensor needs the interpreter
    with pytest.raises(FastDistillError, match="unavailable"):
        bn_stat_loss(x, rm, rv, backend="triton")
    monkeypatch.setenv("FASTDISTILL_BACKEND", "triton")
    with pytest.raises(FastDistillError, match="unavailable"):
        bn_stat_loss(x, rm, rv)


@pytest.mark.interpret
@needs_interpreter
def test_environment_forces_triton(monkeypatch):
    """FASTDISTILL_BACKEND=triton routes CPU tensors to the interpreted kernels (the way CI tests them)."""
    calls = []
    forward, backward = bn_stat_loss_module._IMPLS["triton"]
    monkeypatch.setitem(bn_stat_loss_module._IMPLS, "triton",
                        (lambda *a: calls.append("fwd") or forward(*a), lambda *a: calls.append("bwd") or backward(*a)))
    monkeypatch.setenv("FASTDISTILL_BACKEND", "triton")
    x = torch.randn(4, 3, 4, 4, requires_grad=True)
    bn_stat_loss(x, torch.zeros(3), torch.ones(3), 2).sum().backward()
    assert calls == ["fwd", "bwd"]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("case", CUDA_CASES, ids=case_id)
def test_cuda_matches_reference(case, dtype):
    *shape, groups, channels_last = case
    x, rm, rv, grad_out = make_inputs(*shape, groups, channels_last, dtype, "cuda")
    assert backend_for("bn_stat_loss", x.device) == "triton"
    check_against_reference(x, rm, rv, grad_out, groups, None)
