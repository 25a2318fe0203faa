"""subtask_adam_step against torch.optim.Adam: per-subtask optimisers, the reference's shared Adam, masks and clamps."""

from __future__ import annotations

import pytest
import torch

from fastdistill.backends import triton_importable, triton_interpret
from fastdistill.errors import FastDistillError
from fastdistill.ops import subtask_adam_step
from fastdistill.ops.reference import active_rows, reference_image_update

needs_interpreter = pytest.mark.skipif(not (triton_importable() and triton_interpret()),
                                       reason="needs triton and TRITON_INTERPRET=1 (set by tests/conftest.py off-GPU)")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
BACKENDS = [pytest.param("torch", id="torch"),
            pytest.param("triton", id="triton-interpret", marks=[pytest.mark.interpret, needs_interpreter])]
BETAS, EPS = (0.5, 0.9), 1e-8
LO, HI = [-1.0, -0.6, -1.5], [1.2, 0.7, 1.5]


def layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()


def run_fused(p0, grads, actives, lrs, backend, channels_last, global_step=False):
    """Iterate subtask_adam_step; a row's step counts its own active iterations (or the global one in compat mode)."""
    device = p0.device
    p = layout(p0.clone(), channels_last)
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    steps = torch.zeros(p.shape[0], dtype=torch.int64, device=device)
    lo, hi = torch.tensor(LO, device=device), torch.tensor(HI, device=device)
    for t, (g, active, lr) in enumerate(zip(grads, actives, lrs, strict=True)):
        steps = torch.full_like(steps, t + 1) if global_step else steps + active.long()
        subtask_adam_step(p, layout(g, channels_last), m, v, steps, lr, active, lo, hi, *BETAS, EPS, backend=backend)
    return p, m, v


def schedule(n, iterations, device, seed=0):
    """Rows join at different iterations (EarlyLate), each with its own LR curve; random gradients."""
    gen = torch.Generator().manual_seed(seed)
    join = torch.randint(0, iterations, (n,), generator=gen)
    join[0] = 0
    base_lr = torch.rand(n, generator=gen) * 0.2 + 0.05
    grads = [torch.randn(n, 3, 5, 7, generator=gen).to(device) for _ in range(iterations)]
    actives = [(join <= t).to(device) for t in range(iterations)]
    lrs = [(base_lr * (1 - t / (2 * iterations))).to(device) for t in range(iterations)]
    return grads, actives, lrs


def tolerance(backend):
    # The torch backend performs torch.optim.Adam's operations; Triton computes 1 - beta^step with exp2 in fp32.
    return {"rtol": 0, "atol": 0} if backend == "torch" else {"rtol": 1e-5, "atol": 1e-6}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_matches_one_torch_adam_per_subtask(backend, channels_last, device="cpu", n=7, iterations=4):
    p0 = torch.randn(n, 3, 5, 7, generator=torch.Generator().manual_seed(1)).to(device)
    grads, actives, lrs = schedule(n, iterations, device)
    p, m, v = run_fused(p0, grads, actives, lrs, backend, channels_last)

    rows = [p0[i : i + 1].clone().requires_grad_() for i in range(n)]
    optimisers = [torch.optim.Adam([r], lr=1.0, betas=BETAS, eps=EPS) for r in rows]
    for g, active, lr in zip(grads, actives, lrs, strict=True):
        for i in torch.nonzero(active.cpu()).flatten().tolist():
            optimisers[i].param_groups[0]["lr"] = lr[i].item()
            rows[i].grad = g[i : i + 1].clone()
            reference_image_update(rows[i], optimisers[i], LO, HI)
    ref_p = torch.cat([r.detach() for r in rows])
    ref_m = torch.cat([o.state[r]["exp_avg"] for r, o in zip(rows, optimisers, strict=True)])
    ref_v = torch.cat([o.state[r]["exp_avg_sq"] for r, o in zip(rows, optimisers, strict=True)])
    for ours, ref in ((p, ref_p), (m, ref_m), (v, ref_v)):
        torch.testing.assert_close(ours, ref, **tolerance(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_compat_mode_matches_the_reference_shared_adam(backend, device="cpu", n=6, iterations=5):
    """The reference: one Adam over the batch; rows enter the forward by list slicing (zero gradient until joined)."""
    p0 = torch.randn(n, 3, 5, 7, generator=torch.Generator().manual_seed(2)).clamp(-0.5, 0.5).to(device)
    grads, actives, lrs = schedule(n, iterations, device, seed=3)
    lrs = [torch.full_like(lr, lr[0].item()) for lr in lrs]  # one cosine LR for the whole batch
    p, _, _ = run_fused(p0, grads, actives, lrs, backend, False, global_step=True)

    inputs = p0.clone().requires_grad_()
    optimiser = torch.optim.Adam([inputs], lr=1.0, betas=BETAS, eps=EPS)
    for g, active, lr in zip(grads, actives, lrs, strict=True):
        slicing = torch.nonzero(active.cpu()).flatten().tolist()
        optimiser.param_groups[0]["lr"] = lr[0].item()
        optimiser.zero_grad()
        (active_rows(inputs, slicing) * g[slicing]).sum().backward()
        reference_image_update(inputs, optimiser, LO, HI)
    torch.testing.assert_close(p, inputs.detach(), **tolerance(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_inactive_rows_are_bitwise_untouched(backend):
    gen = torch.Generator().manual_seed(4)
    p, m, v = (torch.randn(5, 3, 4, 4, generator=gen) for _ in range(3))
    v = v.abs()
    active = torch.tensor([True, False, True, False, False])
    for t in (p, m, v):  # non-finite values and odd bit patterns in inactive rows must survive exactly
        t[1, 0, 0, 0], t[3, 1, 2, 3] = float("nan"), float("-inf")
        t[4, 2, 1, 1] = -0.0
    grad = torch.randn(5, 3, 4, 4, generator=gen)
    grad[~active] = float("nan")
    before = [t.clone() for t in (p, m, v)]
    step = torch.tensor([3, 0, 1, 0, 0])
    subtask_adam_step(p, grad, m, v, step, torch.full((5,), 0.1), active, LO, HI, backend=backend)
    for after, old in zip((p, m, v), before, strict=True):
        assert torch.equal(after[~active].view(torch.int32), old[~active].view(torch.int32))
        assert not torch.equal(after[active], old[active])
        assert torch.isfinite(after[active]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_clamp_bounds_hold(backend):
    gen = torch.Generator().manual_seed(5)
    p = torch.randn(4, 3, 6, 6, generator=gen)
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    grad = torch.randn(4, 3, 6, 6, generator=gen)
    lo, hi = torch.tensor(LO), torch.tensor(HI)
    subtask_adam_step(p, grad, m, v, torch.ones(4, dtype=torch.int32), torch.full((4,), 5.0), torch.ones(4, dtype=bool),
                      lo, hi, backend=backend)
    for c in range(3):
        assert p[:, c].min() == LO[c] and p[:, c].max() == HI[c]  # large steps hit both bounds exactly


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_grad_in_another_layout(backend, channels_last):
    """Autograd returns an NCHW gradient for a channels_last image batch gathered with index_select (and the reverse
    can happen): the step equals the one with the gradient in param's layout."""
    gen = torch.Generator().manual_seed(7)
    p0, grad = (torch.randn(5, 3, 4, 6, generator=gen) for _ in range(2))
    args = (torch.tensor([1, 2, 1, 3, 1]), torch.full((5,), 0.1), torch.tensor([True, True, False, True, True]), LO, HI)
    results = []
    for g in (layout(grad, channels_last), layout(grad, not channels_last)):
        p = layout(p0.clone(), channels_last)
        m, v = torch.zeros_like(p), torch.zeros_like(p)
        subtask_adam_step(p, g, m, v, *args, backend=backend)
        results.append((p, m, v))
    for ours, ref in zip(*results, strict=True):
        assert ours.stride() == ref.stride() and torch.equal(ours, ref)


@pytest.mark.parametrize("problem", ["dtype", "shape", "layout", "step_dtype", "lr_shape", "active_dtype", "bounds"])
def test_invalid_inputs_raise(problem):
    n = 4
    p, g, m, v = (torch.zeros(n, 3, 4, 4) for _ in range(4))
    args = dict(param=p, grad=g, exp_avg=m, exp_avg_sq=v, step=torch.ones(n, dtype=torch.int64),
                lr=torch.full((n,), 0.1), active=torch.ones(n, dtype=bool), lo=LO, hi=HI)
    args.update({"dtype": {"exp_avg": m.double()}, "shape": {"grad": g[:2]},
                 "layout": {"exp_avg": m.contiguous(memory_format=torch.channels_last)},
                 "step_dtype": {"step": torch.ones(n)}, "lr_shape": {"lr": torch.full((n + 1,), 0.1)},
                 "active_dtype": {"active": torch.ones(n, dtype=torch.int64)}, "bounds": {"lo": LO[:2]}}[problem])
    with pytest.raises(FastDistillError):
        subtask_adam_step(**args)


def test_forcing_unavailable_backend_raises(monkeypatch):
    p = torch.zeros(2, 3, 2, 2)
    args = (p, p.clone(), p.clone(), p.clone(), torch.ones(2, dtype=torch.int64), torch.ones(2),
            torch.ones(2, dtype=bool), LO, HI)
    with pytest.raises(FastDistillError, match="no 'cpp' backend"):
        subtask_adam_step(*args, backend="cpp")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(FastDistillError, match="unavailable"):
        subtask_adam_step(*args, backend="triton")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_cuda_matches_torch_adam(channels_last):
    test_matches_one_torch_adam_per_subtask("triton", channels_last, device="cuda", n=12, iterations=6)
    test_compat_mode_matches_the_reference_shared_adam("triton", device="cuda", n=12, iterations=6)


@pytest.mark.cuda
@needs_cuda
def test_cuda_large_batch_masks_and_bounds():
    """A recover-sized batch (1600 x 3 x 64 x 64): triton equals the torch oracle; inactive rows keep their bits."""
    gen = torch.Generator().manual_seed(6)
    shape = (1600, 3, 64, 64)
    p, g, m, v = (torch.randn(shape, generator=gen).cuda() for _ in range(4))
    v = v.abs()
    step = torch.randint(1, 500, (shape[0],), generator=gen).cuda()
    lr = (torch.rand(shape[0], generator=gen) * 0.25).cuda()
    active = (torch.rand(shape[0], generator=gen) < 0.6).cuda()
    lo, hi = torch.tensor(LO).cuda(), torch.tensor(HI).cuda()
    ours, oracle = [t.clone() for t in (p, m, v)], [t.clone() for t in (p, m, v)]
    subtask_adam_step(ours[0], g, ours[1], ours[2], step, lr, active, lo, hi)
    subtask_adam_step(oracle[0], g, oracle[1], oracle[2], step, lr, active, lo, hi, backend="torch")
    for a, b, before in zip(ours, oracle, (p, m, v), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert torch.equal(a[~active].view(torch.int32), before[~active].view(torch.int32))
    updated = ours[0][active]  # inactive rows keep their (unclamped) initial values
    for c in range(3):
        assert updated[:, c].min() == LO[c] and updated[:, c].max() == HI[c]  # N(0, 1) init: both bounds are hit
