"""One Adam step for a batch of images where every row (image) has its own step count, LR and active flag.

EarlyLate recover optimises many independent subtasks (image subsets that join at different rounds, possibly of
different classes or batches) in one tensor. ``subtask_adam_step`` updates all of them in one launch:

    for each active row i (param/grad/moments [N, C, H, W]; step, lr, active [N]):
        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        p = p - lr_i / (1 - beta1^step_i) * m / (sqrt(v) / sqrt(1 - beta2^step_i) + eps)
        p[c] = clamp(p[c], lo[c], hi[c]) for every channel c

Rows with ``active`` false are not read or written (param and both moments keep their exact bits). The arithmetic is
torch.optim.Adam's (lerp for m, bias corrections as in its single-tensor path).

Backends: Triton (``subtask_adam_triton``; CUDA, or CPU under ``TRITON_INTERPRET=1`` when forced) and torch
(``subtask_adam_torch``: vectorised over rows; the CPU default; on CUDA it synchronises once to find the active rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastdistill.errors import FastDistillError
from fastdistill.ops.registry import backend_for
from fastdistill.ops.subtask_adam_torch import subtask_adam_step_torch
from fastdistill.ops.subtask_adam_triton import subtask_adam_step_triton

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
