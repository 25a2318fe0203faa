"""One Adam step for a batch of images where every row (image) has its own step count, LR and active flag.

EarlyLate recover optimises many independent subtasks (image subsets that join at different rounds, possibly of
different classes or batches) in one tensor. ``subtask_adam_step`` updates all of them in one launch:

    for each active row i (param/grad/moments [N, C, H, W]; step, lr, active [N]):
        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        p = p - lr_i / (1 - beta1^step_i) * m / (sqrt(v) / sqrt(1 - beta2^step_i) + eps)
        p[c] = clamp(p[c], lo[c], hi[c]) for every channel c

Rows with ``active`` false are not read or written (param and both moments keep their exact bits). The arithmetic is
torch.optim.Adam's (lerp for m, bias corrections as in its single-tensor path).

Backends: Triton (CUDA; CPU under ``TRITON_INTERPRET=1`` when forced) and torch (vectorised over rows; the CPU default;
on CUDA it synchronises once to find the active rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fastdistill.backends import triton_interpret
from fastdistill.errors import FastDistillError
from fastdistill.ops.registry import backend_for

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs use the torch backend
    triton = None

if triton is not None:

    @triton.jit
    def _subtask_adam_step_kernel(
        P, G, M, V, STEP, LR, ACTIVE, LO, HI,
        row_stride, row_numel, C, HW, beta1, beta2, eps, log2_beta1, log2_beta2,
        CHANNELS_LAST: tl.constexpr, BLOCK: tl.constexpr,
    ):
        """One block of one row: Adam with the row's step/LR, then the per-channel clamp; nothing if inactive."""
        row = tl.program_id(0)
        active = tl.load(ACTIVE + row) != 0
        offsets = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = (offsets < row_numel) & active
        step = tl.where(active, tl.load(STEP + row).to(tl.float32), 1.0)  # an inactive row's step may be 0
        lr = tl.load(LR + row).to(tl.float32)
        bias_correction1 = 1.0 - tl.exp2(step * log2_beta1)
        bias_correction2_sqrt = tl.sqrt(1.0 - tl.exp2(step * log2_beta2))
        ptr_offsets = tl.cast(row, tl.int64) * row_stride + offsets
        g = tl.load(G + ptr_offsets, mask=mask, other=0.0)
        m = tl.load(M + ptr_offsets, mask=mask, other=0.0)
        v = tl.load(V + ptr_offsets, mask=mask, other=0.0)
        p = tl.load(P + ptr_offsets, mask=mask, other=0.0)
        m = m + (1.0 - beta1) * (g - m)
        v = beta2 * v + (1.0 - beta2) * g * g
        p = p - (lr / bias_correction1) * m / (tl.sqrt(v) / bias_correction2_sqrt + eps)
        if CHANNELS_LAST:
            channel = offsets % C
        else:
            channel = offsets // HW
        lo = tl.load(LO + channel, mask=mask, other=0.0)
        hi = tl.load(HI + channel, mask=mask, other=0.0)
        p = tl.minimum(tl.maximum(p, lo), hi)
        tl.store(M + ptr_offsets, m, mask=mask)
        tl.store(V + ptr_offsets, v, mask=mask)
        tl.store(P + ptr_offsets, p, mask=mask)

    _subtask_adam_step_tuned = triton.autotune(
        configs=[triton.Config({"BLOCK": b}, num_warps=w) for b, w in [(512, 4), (1024, 4), (2048, 8), (4096, 8)]],
        key=["row_numel"],
        restore_value=["P", "M", "V"],  # tuning runs the in-place update several times
    )(_subtask_adam_step_kernel)

_INTERPRET_BLOCK = 64


def subtask_adam_step_triton(param, grad, exp_avg, exp_avg_sq, step, lr, active, lo, hi, beta1, beta2, eps) -> None:
    """Triton launcher (inputs already checked): grid = rows x blocks of a row."""
    n, c, h, w = param.shape
    row_numel = c * h * w
    channels_last = not param.is_contiguous()
    args = (param, grad, exp_avg, exp_avg_sq, step, lr, active.view(torch.uint8), lo, hi, param.stride(0), row_numel,
            c, h * w, beta1, beta2, eps, math.log2(beta1), math.log2(beta2))
    if param.device.type == "cuda" and not triton_interpret():
        _subtask_adam_step_tuned[lambda meta: (n, (row_numel + meta["BLOCK"] - 1) // meta["BLOCK"])](
            *args, CHANNELS_LAST=channels_last)
    else:
        _subtask_adam_step_kernel[(n, (row_numel + _INTERPRET_BLOCK - 1) // _INTERPRET_BLOCK)](
            *args, CHANNELS_LAST=channels_last, BLOCK=_INTERPRET_BLOCK)


def subtask_adam_step_torch(param, grad, exp_avg, exp_avg_sq, step, lr, active, lo, hi, beta1, beta2, eps) -> None:
    """Torch implementation: torch.optim.Adam's in-place arithmetic on the active rows (gathered unless all active)."""
    rows = torch.nonzero(active).squeeze(1)
    if rows.numel() == 0:
        return
    every_row = rows.numel() == param.shape[0]
    p, g, m, v = (t if every_row else t.index_select(0, rows) for t in (param, grad, exp_avg, exp_avg_sq))
    steps = step[rows].to(torch.float64)
    neg_step_size = (-lr[rows].to(torch.float64) / (1 - torch.pow(beta1, steps))).to(torch.float32).view(-1, 1, 1, 1)
    bias_correction2_sqrt = (1 - torch.pow(beta2, steps)).sqrt().to(torch.float32).view(-1, 1, 1, 1)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    p.add_((m * neg_step_size).div_(v.sqrt().div_(bias_correction2_sqrt).add_(eps)))
    p.clamp_(lo.view(1, -1, 1, 1), hi.view(1, -1, 1, 1))
    if not every_row:
        for full, part in ((param, p), (exp_avg, m), (exp_avg_sq, v)):
            full.index_copy_(0, rows, part)


_IMPLS = {"triton": subtask_adam_step_triton, "torch": subtask_adam_step_torch}


def _bounds(bound: torch.Tensor | Sequence[float], name: str, c: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(bound, dtype=torch.float32, device=device).contiguous()
    if t.shape != (c,):
        raise FastDistillError(f"subtask_adam_step: {name} must have one bound per channel ({c}), got {tuple(t.shape)}")
    return t


def _check(param, grad, exp_avg, exp_avg_sq, step, lr, active) -> None:
    if param.dim() != 4:
        raise FastDistillError(f"subtask_adam_step: param must be [N, C, H, W], got shape {tuple(param.shape)}")
    dense = param.is_contiguous() or param.is_contiguous(memory_format=torch.channels_last)
    if not dense:
        raise FastDistillError("subtask_adam_step: param must be NCHW-contiguous or channels_last")
    for name, t in (("param", param), ("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if t.dtype != torch.float32:
            raise FastDistillError(f"subtask_adam_step: {name} must be float32, got {t.dtype}")
        if t.shape != param.shape or t.device != param.device or (t is not grad and t.stride() != param.stride()):
            raise FastDistillError(f"subtask_adam_step: {name} must have param's shape, layout and device "
                                   f"({tuple(param.shape)}, strides {param.stride()}, {param.device}); got "
                                   f"{tuple(t.shape)}, strides {t.stride()}, {t.device}")
    n = param.shape[0]
    kinds = (("step", step, "an integer", not step.is_floating_point() and step.dtype != torch.bool),
             ("lr", lr, "a float", lr.is_floating_point()), ("active", active, "a bool", active.dtype == torch.bool))
    for name, t, kind, ok in kinds:
        if t.shape != (n,) or t.device != param.device or not ok:
            raise FastDistillError(f"subtask_adam_step: {name} must be {kind} [{n}] tensor on {param.device}; got "
                                   f"{t.dtype} {tuple(t.shape)} on {t.device}")


def subtask_adam_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                      step: torch.Tensor, lr: torch.Tensor, active: torch.Tensor,
                      lo: torch.Tensor | Sequence[float], hi: torch.Tensor | Sequence[float], beta1: float = 0.5,
                      beta2: float = 0.9, eps: float = 1e-8, backend: str | None = None) -> None:
    """In-place Adam step + per-channel clamp on the active rows of ``param`` (one launch on the Triton backend).

    param, grad, exp_avg, exp_avg_sq: fp32 [N, C, H, W]; param and the moments in one layout (NCHW or channels_last),
        grad in any (copied to param's layout if it differs); the moments start at 0.
    step: int [N], the bias-correction step of each row for *this* update, i.e. already incremented by the caller
        (1 on a row's first update). Compat mode (the reference's one shared Adam over the batch): give every row the
        global step, ``torch.full((N,), t + 1)`` at iteration t, and mark not-yet-joined rows inactive.
    lr: float [N], the learning rate of each row at this step. active: bool [N]; inactive rows are left bit-for-bit
        untouched (their step, lr and grad are ignored). lo, hi: [C] per-channel clamp bounds (tensors on param's
        device avoid a host-to-device copy). No autograd: ``param`` may be a leaf that requires grad.
    """
    _check(param, grad, exp_avg, exp_avg_sq, step, lr, active)
    if grad.stride() != param.stride():  # e.g. autograd's NCHW gradient of a channels_last image batch
        grad = grad.contiguous(memory_format=torch.channels_last if param.stride(1) == 1 else torch.contiguous_format)
    c = param.shape[1]
    lo, hi = _bounds(lo, "lo", c, param.device), _bounds(hi, "hi", c, param.device)
    impl = _IMPLS[backend_for("subtask_adam_step", param.device, backend)]
    with torch.no_grad():
        impl(param, grad, exp_avg, exp_avg_sq, step, lr, active, lo, hi, beta1, beta2, eps)
