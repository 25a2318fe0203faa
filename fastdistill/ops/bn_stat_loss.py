"""BN-statistic matching loss with per-group statistics and a closed-form backward.

For x in [N, C, H, W] split into ``groups`` equal contiguous chunks of the batch, group g's loss is

    ||mean_g - running_mean||_2 + ||var_g - running_var||_2,

mean_g / var_g (biased) per channel over the group's (N / groups, H, W). With M = N / groups * H * W, the input
gradient is a per-(group, channel) affine map of x:

    dL/dx = grad_g * (coef_mu + coef_var * (x - mean_g)),
    coef_mu = d_mu / (M ||d_mu||),  coef_var = 2 d_var / (M ||d_var||),  d_mu = mean_g - running_mean, d_var likewise,

so the backward reads x once and writes the gradient once (a zero norm gives a zero coefficient, never NaN).

Backends: Triton (CUDA; CPU tensors under ``TRITON_INTERPRET=1`` when forced) and torch (CPU default: sums and sums of
squares by vectorised fp32 reductions, no permuted copy, no temporary). The kernels and launchers here are shared with
``stat_batchnorm`` (BatchNorm2d that returns this loss), which fuses the normalised output into the statistics pass and
BN's input gradient into the backward pass. Triton makes two launches forward (partial sums [+ y], then loss and
coefficients) and one backward, with launch parameters derived from the shape (``_plan``: no autotuning) and no
host synchronisation.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from fastdistill.backends import triton_interpret
from fastdistill.errors import FastDistillError
from fastdistill.ops.registry import backend_for

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs use the torch backend
    triton = None

_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

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


def _coefficients(mean: torch.Tensor, var: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                  count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss [G], coef_mu [G, C], coef_var [G, C]) from per-group statistics (zero norm -> zero coefficient)."""
    d_mu, d_var = mean - running_mean, var - running_var
    norm_mu = torch.linalg.vector_norm(d_mu, dim=1, keepdim=True)
    norm_var = torch.linalg.vector_norm(d_var, dim=1, keepdim=True)
    coef_mu = d_mu * torch.where(norm_mu > 0, 1.0 / (count * norm_mu), 0.0)
    coef_var = d_var * torch.where(norm_var > 0, 2.0 / (count * norm_var), 0.0)
    return (norm_mu + norm_var).squeeze(1), coef_mu, coef_var


def _row_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (image, channel) sum and sum of squares over H x W as float64 [N, C]: two vectorised fp32 reductions along
    the contiguous axis (no temporary, no permuted copy), combined across images in float64."""
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        rows, dim = x.permute(0, 2, 3, 1).view(n, h * w, c), 1
    else:
        rows, dim = x.contiguous().view(n, c, h * w), 2
    sums = rows.sum(dim, dtype=torch.float32)
    squares = torch.linalg.vector_norm(rows, dim=dim, dtype=torch.float32).double().square()
    return sums.double(), squares


def torch_bn_stat_loss_forward(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int):
    """Torch implementation of ``bn_stat_loss_forward`` without the BN output: (loss, stats [3, G, C], None).

    var = E[x^2] - mean^2 from fp32 sums: relative error about 1e-7 * (1 + mean^2 / var) (the Triton kernel
    accumulates x - running_mean instead, which removes most of the cancellation).
    """
    n, c, h, w = x.shape
    count = n // groups * h * w
    sums, squares = (t.view(groups, n // groups, c).sum(1) for t in _row_moments(x))
    mean = sums / count
    var = (squares / count - mean.square()).clamp_min(0)
    mean = mean.float()
    loss, coef_mu, coef_var = _coefficients(mean, var.float(), running_mean, running_var, count)
    return loss, torch.stack((mean, coef_mu, coef_var)), None


def torch_bn_stat_loss_backward(x: torch.Tensor, grad_loss: torch.Tensor, stats: torch.Tensor,
                                dy: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Torch implementation of ``bn_stat_loss_backward``: one fused multiply-add per element (plus dy's term)."""
    n, c, h, w = x.shape
    groups = grad_loss.shape[0]
    mean, coef_mu, coef_var = stats.view(3, groups, c)
    grad = grad_loss.float().view(groups, 1)
    slope = (coef_var * grad).view(groups, 1, c, 1, 1)
    intercept = ((coef_mu - coef_var * mean) * grad).view(groups, 1, c, 1, 1)
    xf = x if x.dtype == torch.float32 else x.float()
    dx = torch.addcmul(intercept, xf.view(groups, n // groups, c, h, w), slope).view(n, c, h, w)
    if dy is not None:
        dx.addcmul_(dy, scale.view(1, c, 1, 1))
    return dx.to(x.dtype)


_IMPLS = {
    "triton": (bn_stat_loss_forward, bn_stat_loss_backward),
    "torch": (torch_bn_stat_loss_forward, torch_bn_stat_loss_backward),
}


def check_bn_input(x: torch.Tensor, groups: int, op: str) -> int:
    """Validate x's shape, dtype and groups from its metadata only; return its number of channels."""
    if x.dim() != 4:
        raise FastDistillError(f"{op}: x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype not in _FLOAT_DTYPES:
        raise FastDistillError(f"{op}: x must be float32, bfloat16 or float16, got {x.dtype}")
    n, c, h, w = x.shape
    if groups < 1 or n == 0 or n % groups:
        raise FastDistillError(f"{op}: the batch of {n} cannot be split into {groups} equal non-empty groups")
    if c * h * w == 0:
        raise FastDistillError(f"{op}: x has no elements (shape {tuple(x.shape)})")
    return c


def fp32_statistic(t: torch.Tensor, channels: int, device: torch.device, name: str, op: str) -> torch.Tensor:
    """``t`` checked to be [channels] on ``device``, as fp32 contiguous (itself when it already is)."""
    if t.shape != (channels,):
        raise FastDistillError(f"{op}: {name} must have shape ({channels},) for x with {channels} channels, got "
                               f"{tuple(t.shape)}")
    if t.device != device:
        raise FastDistillError(f"{op}: {name} is on {t.device} but x is on {device}")
    return t if t.dtype == torch.float32 and t.is_contiguous() else t.float().contiguous()


class BNStatLossFunction(torch.autograd.Function):
    """Autograd for ``bn_stat_loss``: forward saves x and per-(group, channel) coefficients for the affine backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int,
                backend: str) -> torch.Tensor:
        loss, stats, _ = _IMPLS[backend][0](x, running_mean, running_var, groups)
        ctx.save_for_backward(x, stats)
        ctx.backend = backend
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        x, stats = ctx.saved_tensors
        return _IMPLS[ctx.backend][1](x, grad_loss, stats), None, None, None, None


def bn_stat_loss(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int = 1,
                 backend: str | None = None) -> torch.Tensor:
    """Per-group BN-statistic matching loss -> fp32 Tensor[groups]; differentiable in ``x``.

    x: [N, C, H, W], NCHW-contiguous or channels_last, fp32/bf16/fp16 (statistics accumulate in fp32); the batch is
    split into ``groups`` equal contiguous chunks (rows g*N/groups ... (g+1)*N/groups - 1 form group g).
    running_mean / running_var: [C]. ``backend``: "triton", "torch", or None for the automatic choice
    (Triton on CUDA, torch on CPU; ``FASTDISTILL_BACKEND`` overrides).
    """
    c = check_bn_input(x, groups, "bn_stat_loss")
    running_mean = fp32_statistic(running_mean, c, x.device, "running_mean", "bn_stat_loss")
    running_var = fp32_statistic(running_var, c, x.device, "running_var", "bn_stat_loss")
    backend = backend_for("bn_stat_loss", x.device, backend)
    return BNStatLossFunction.apply(x, running_mean, running_var, groups, backend)
