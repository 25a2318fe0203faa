"""Triton kernels and launchers of ``bn_stat_loss`` (shared with ``stat_batchnorm``, which also writes BN's output).

Two launches forward (partial sums [+ y], then loss and coefficients) and one backward, with launch parameters derived
from the shape (``_plan``: no autotuning) and no host synchronisation. The module imports without Triton (CPU-only
installs); its launchers then are never selected.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from fastdistill.backends import triton_interpret

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs use the torch backend
    triton = None

if triton is not None:

    @triton.jit
    def _bn_stat_loss_forward_kernel(
        X, Y, WORK, RM, SCALE, SHIFT,
        C, HW, hw_chunk, G, rows_per_group, rows_per_split, SPLIT,
        stride_n, stride_c, stride_hw,
        WRITE_Y: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
    ):
        """Partial sums of (x - running_mean) and its square for one (group, split of rows, block of channels, chunk
        of the feature map); the grid is (G * SPLIT, channel blocks, chunks).

        With WRITE_Y, also writes the eval-mode BN output y = x * scale + shift (per-channel fp32 constants). The sums
        go to WORK's partial sums [G * SPLIT * chunks, 2, C], after its stats [3, G, C] (see the finalize kernel).
        """
        pid = tl.program_id(0)
        group = pid // SPLIT
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_mask = c < C
        rm = tl.load(RM + c, mask=c_mask, other=0.0)
        if WRITE_Y:
            scale = tl.load(SCALE + c, mask=c_mask, other=0.0)
            shift = tl.load(SHIFT + c, mask=c_mask, other=0.0)
        acc = tl.zeros([BLOCK_C, BLOCK_HW], dtype=tl.float32)
        acc_sq = tl.zeros([BLOCK_C, BLOCK_HW], dtype=tl.float32)
        row_begin = group * rows_per_group + (pid % SPLIT) * rows_per_split
        row_end = tl.minimum(row_begin + rows_per_split, (group + 1) * rows_per_group)
        hw_start = tl.program_id(2) * hw_chunk  # hw_chunk is a multiple of BLOCK_HW
        hw_stop = tl.minimum(hw_start + hw_chunk, HW)
        for row in range(row_begin, row_end):
            row_offset = tl.cast(row, tl.int64) * stride_n
            for hw_begin in range(hw_start, hw_stop, BLOCK_HW):
                hw = hw_begin + tl.arange(0, BLOCK_HW)
                mask = c_mask[:, None] & (hw < HW)[None, :]
                offsets = row_offset + c[:, None] * stride_c + hw[None, :] * stride_hw
                x = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
                d = tl.where(mask, x - rm[:, None], 0.0)
                acc += d
                acc_sq += d * d
                if WRITE_Y:
                    y = x * scale[:, None] + shift[:, None]
                    tl.store(Y + offsets, y.to(Y.dtype.element_ty), mask=mask)
        out = WORK + 3 * G * C + (pid * tl.num_programs(2) + tl.program_id(2)) * 2 * C + c
        tl.store(out, tl.sum(acc, axis=1), mask=c_mask)
        tl.store(out + C, tl.sum(acc_sq, axis=1), mask=c_mask)

    @triton.jit
    def _group_differences(PARTIAL, RV, group, c, c_mask, C, PARTS, inv_count, BLOCK_S: tl.constexpr):
        """(mean - running_mean, var - running_var) of one group for channels c, from its PARTS partial sums."""
        s1 = tl.zeros(c.shape, dtype=tl.float32)
        s2 = tl.zeros(c.shape, dtype=tl.float32)
        for s_begin in range(0, PARTS, BLOCK_S):
            split = s_begin + tl.arange(0, BLOCK_S)
            mask = (split < PARTS)[:, None] & c_mask[None, :]
            part = PARTIAL + (group * PARTS + split)[:, None] * 2 * C + c[None, :]
            s1 += tl.sum(tl.load(part, mask=mask, other=0.0), axis=0)
            s2 += tl.sum(tl.load(part + C, mask=mask, other=0.0), axis=0)
        d_mu = s1 * inv_count  # the sums are of x - running_mean
        var = tl.maximum(s2 * inv_count - d_mu * d_mu, 0.0)
        d_var = tl.where(c_mask, var - tl.load(RV + c, mask=c_mask, other=0.0), 0.0)
        return d_mu, d_var

    @triton.jit
    def _bn_stat_loss_finalize_kernel(
        WORK, RM, RV, LOSS, C, G, PARTS, inv_count,
        BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        """One program per group: loss, and the backward's (mean, coef_mu, coef_var) of every channel.

        WORK holds stats [3, G, C] (mean, coef_mu, coef_var) followed by the forward's partial sums [G * PARTS, 2, C].
        """
        group = tl.program_id(0)
        partial = WORK + 3 * G * C
        sq_mu = tl.zeros([BLOCK_C], dtype=tl.float32)
        sq_var = tl.zeros([BLOCK_C], dtype=tl.float32)
        for c_begin in range(0, C, BLOCK_C):
            c = c_begin + tl.arange(0, BLOCK_C)
            d_mu, d_var = _group_differences(partial, RV, group, c, c < C, C, PARTS, inv_count, BLOCK_S)
            sq_mu += d_mu * d_mu
            sq_var += d_var * d_var
        norm_mu = tl.sqrt(tl.sum(sq_mu, axis=0))
        norm_var = tl.sqrt(tl.sum(sq_var, axis=0))
        tl.store(LOSS + group, norm_mu + norm_var)
        mu_factor = tl.where(norm_mu > 0, inv_count / tl.where(norm_mu > 0, norm_mu, 1.0), 0.0)
        var_factor = tl.where(norm_var > 0, 2.0 * inv_count / tl.where(norm_var > 0, norm_var, 1.0), 0.0)
        for c_begin in range(0, C, BLOCK_C):
            c = c_begin + tl.arange(0, BLOCK_C)
            c_mask = c < C
            d_mu, d_var = _group_differences(partial, RV, group, c, c_mask, C, PARTS, inv_count, BLOCK_S)
            out = WORK + group * C + c
            tl.store(out, tl.load(RM + c, mask=c_mask, other=0.0) + d_mu, mask=c_mask)
            tl.store(out + G * C, d_mu * mu_factor, mask=c_mask)
            tl.store(out + 2 * G * C, d_var * var_factor, mask=c_mask)

    @triton.jit
    def _bn_stat_loss_backward_kernel(
        X, DY, DX, GRAD_LOSS, STATS, SCALE,
        N, C, HW, hw_chunk, G, rows_per_group, rows_per_program, grad_stride,
        stride_n, stride_c, stride_hw, dy_stride_n, dy_stride_c, dy_stride_hw,
        HAS_DY: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
    ):
        """dx = grad_g * (coef_mu + coef_var * (x - mean_g)) [+ dy * scale]: rows x channel block x chunk of the map."""
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_mask = c < C
        if HAS_DY:
            scale = tl.load(SCALE + c, mask=c_mask, other=0.0)
        row_begin = tl.program_id(0) * rows_per_program
        row_end = tl.minimum(row_begin + rows_per_program, N)
        hw_start = tl.program_id(2) * hw_chunk  # hw_chunk is a multiple of BLOCK_HW
        hw_stop = tl.minimum(hw_start + hw_chunk, HW)
        for row in range(row_begin, row_end):
            group = row // rows_per_group
            grad = tl.load(GRAD_LOSS + group * grad_stride)
            stats = STATS + group * C + c
            mean = tl.load(stats, mask=c_mask, other=0.0)
            coef_mu = tl.load(stats + G * C, mask=c_mask, other=0.0) * grad
            coef_var = tl.load(stats + 2 * G * C, mask=c_mask, other=0.0) * grad
            row_offset = tl.cast(row, tl.int64) * stride_n
            dy_row_offset = tl.cast(row, tl.int64) * dy_stride_n
            for hw_begin in range(hw_start, hw_stop, BLOCK_HW):
                hw = hw_begin + tl.arange(0, BLOCK_HW)
                mask = c_mask[:, None] & (hw < HW)[None, :]
                offsets = row_offset + c[:, None] * stride_c + hw[None, :] * stride_hw
                x = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
                dx = coef_mu[:, None] + coef_var[:, None] * (x - mean[:, None])
                if HAS_DY:
                    dy_offsets = dy_row_offset + c[:, None] * dy_stride_c + hw[None, :] * dy_stride_hw
                    dy = tl.load(DY + dy_offsets, mask=mask, other=0.0).to(tl.float32)
                    dx += dy * scale[:, None]
                tl.store(DX + offsets, dx.to(DX.dtype.element_ty), mask=mask)


_GPU_TILE = 2048  # elements per [BLOCK_C, BLOCK_HW] tile on a GPU (4 warps): at most (2, 1024) ... (128, 16)


class _Plan(NamedTuple):
    block_c: int
    block_hw: int
    rows_per_split: int  # forward: rows of one program (a group has `split` of them)
    split: int
    forward_hw_chunk: int  # positions of the feature map per program (a multiple of block_hw)
    forward_grid: tuple[int, int, int]  # (groups * split, channel blocks, map chunks)
    parts: int  # partial sums per group: split * map chunks
    rows_per_program: int  # backward
    backward_hw_chunk: int
    backward_grid: tuple[int, int, int]  # (row blocks, channel blocks, map chunks)
    block_s: int  # finalize: [BLOCK_S, BLOCK_C_FINAL] tiles of partial sums
    block_c_final: int


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=1024)
def _plan(n: int, c: int, hw: int, groups: int, channels_last: bool, sms: int | None) -> _Plan:
    """Launch parameters. GPU (``sms`` = its SM count): the tile's long side along the contiguous axis (HW for NCHW,
    C for channels_last); forward splits of >= 64K elements (all channels) and at most ~8 per SM, then chunks of the
    map while there are fewer than 4 programs per SM; backward programs of one row and about 32K elements.
    Interpreter (``sms`` None): about half the channels and a quarter of the map per tile, chunks of half the map, two
    splits per group and two backward row blocks, so that tiny test shapes cover every loop and block."""
    rows_per_group = n // groups
    c2, hw2 = triton.next_power_of_2(c), triton.next_power_of_2(hw)
    if sms is None:
        block_c, block_hw = min(256, max(4, c2 // 2)), min(256, max(16, hw2 // 4))
        rows_per_split, rows_per_program = _cdiv(rows_per_group, 2), _cdiv(n, 2)
        forward_hw_chunk = backward_hw_chunk = 2 * block_hw
    else:
        if channels_last:
            block_c = min(max(c2, 2), 128)
            block_hw = max(16, min(hw2, _GPU_TILE // block_c))
        else:
            block_hw = max(16, min(hw2, 1024))
            block_c = max(2, min(c2, _GPU_TILE // block_hw))
        rows_per_split, rows_per_program = max(_cdiv(65536, c * hw), _cdiv(n, 8 * sms)), 1
        backward_hw_chunk = block_hw * max(1, 32768 // (min(c, block_c) * block_hw))
        forward_programs = groups * _cdiv(rows_per_group, rows_per_split) * _cdiv(c, block_c)
        chunks = min(_cdiv(hw, backward_hw_chunk), max(1, _cdiv(4 * sms, forward_programs)))
        forward_hw_chunk = block_hw * _cdiv(_cdiv(hw, chunks), block_hw)
    split = _cdiv(rows_per_group, rows_per_split)
    c_blocks, forward_chunks = _cdiv(c, block_c), _cdiv(hw, forward_hw_chunk)
    parts = split * forward_chunks
    if sms is None:
        block_s, block_c_final = max(1, triton.next_power_of_2(parts) // 2), min(256, max(16, c2 // 2))
    else:  # about 4K partial sums per tile
        block_s = min(64, triton.next_power_of_2(parts))
        block_c_final = min(max(16, 4096 // block_s), c2)
    return _Plan(block_c, block_hw, rows_per_split, split, forward_hw_chunk, (groups * split, c_blocks, forward_chunks),
                 parts, rows_per_program, backward_hw_chunk,
                 (_cdiv(n, rows_per_program), c_blocks, _cdiv(hw, backward_hw_chunk)), block_s, block_c_final)


@functools.cache
def _num_sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


_INTERPRETED = triton_interpret()  # read when the kernels above are decorated, as Triton does


def _sm_count(device: torch.device) -> int | None:
    """The CUDA device's SM count for ``_plan``; None under the interpreter (tests patch this to run GPU plans)."""
    if device.type != "cuda" or _INTERPRETED:
        return None
    return _num_sms(device)


def _layout(t: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
    """``t`` (copied only if neither NCHW- nor NHWC-dense) and its (n, c, merged hw) strides."""
    if t.is_contiguous():
        return t, t.stride(0), t.stride(1), 1
    if not t.is_contiguous(memory_format=torch.channels_last):
        t = t.contiguous()
        return t, t.stride(0), t.stride(1), 1
    return t, t.stride(0), 1, t.shape[1]


def bn_stat_loss_forward(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int,
                         affine: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Triton launcher (2 launches, 3 allocations, no synchronisation): (loss [G], stats, y or None).

    Inputs are checked by the caller; the running statistics are fp32 contiguous [C]. ``stats`` (what the backward
    reads) starts with [3, G, C] = (mean, coef_mu, coef_var). ``affine`` = fp32 (scale, shift) [C] also writes the
    eval-mode BatchNorm output y = x * scale + shift (x's dtype and layout).
    """
    x, stride_n, stride_c, stride_hw = _layout(x)
    n, c, h, w = x.shape
    plan = _plan(n, c, h * w, groups, stride_c == 1 and c > 1, _sm_count(x.device))
    stats = torch.empty((3 + 2 * plan.parts) * groups * c, device=x.device, dtype=torch.float32)
    loss = torch.empty(groups, device=x.device, dtype=torch.float32)
    y = None if affine is None else torch.empty_like(x)
    scale, shift = affine if affine is not None else (running_mean, running_mean)
    _bn_stat_loss_forward_kernel[plan.forward_grid](
        x, y, stats, running_mean, scale, shift, c, h * w, plan.forward_hw_chunk, groups, n // groups,
        plan.rows_per_split, plan.split, stride_n, stride_c, stride_hw, WRITE_Y=y is not None, BLOCK_C=plan.block_c,
        BLOCK_HW=plan.block_hw)
    _bn_stat_loss_finalize_kernel[(groups,)](stats, running_mean, running_var, loss, c, groups, plan.parts,
                                             1.0 / (n // groups * h * w), BLOCK_S=plan.block_s,
                                             BLOCK_C=plan.block_c_final, num_warps=8)
    return loss, stats, y


def bn_stat_loss_backward(x: torch.Tensor, grad_loss: torch.Tensor, stats: torch.Tensor,
                          dy: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Triton launcher (1 launch, 1 allocation): the loss's input gradient, plus ``dy * scale`` (BatchNorm's own input
    gradient; fp32 scale = weight / sqrt(running_var + eps)) when ``dy`` is given. ``grad_loss``: fp32 [G]."""
    x, stride_n, stride_c, stride_hw = _layout(x)
    n, c, h, w = x.shape
    groups = grad_loss.shape[0]
    plan = _plan(n, c, h * w, groups, stride_c == 1 and c > 1, _sm_count(x.device))
    dx = torch.empty_like(x)
    dy, *dy_strides = _layout(dy) if dy is not None else (None, 0, 0, 0)
    _bn_stat_loss_backward_kernel[plan.backward_grid](
        x, dy, dx, grad_loss, stats, scale, n, c, h * w, plan.backward_hw_chunk, groups, n // groups,
        plan.rows_per_program, grad_loss.stride(0), stride_n, stride_c, stride_hw, *dy_strides, HAS_DY=dy is not None,
        BLOCK_C=plan.block_c, BLOCK_HW=plan.block_hw)
    return dx
