"""Triton kernel and launcher of ``subtask_adam_step``: one launch, grid = rows x blocks of a row (autotuned block size
on CUDA; a fixed small block under the interpreter). Imports without Triton; the launcher then is never selected."""

from __future__ import annotations

import math

import torch

from fastdistill.backends import triton_interpret

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
