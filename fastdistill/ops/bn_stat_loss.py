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
BN's input gradient into the backward pass.
"""

from __future__ import annotations

import functools

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
        X, Y, W, B, RM, RV, PARTIAL,
        C, HW, rows_per_group, rows_per_split, SPLIT, eps,
        stride_n, stride_c, stride_hw,
        WRITE_Y: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
    ):
        """Partial sums of (x - running_mean) and its square for one (group, split of rows, block of channels).

        With WRITE_Y, also writes the eval-mode BN output y = x * w / sqrt(rv + eps) + (b - rm * w / sqrt(rv + eps)).
        """
        pid = tl.program_id(0)
        group = pid // SPLIT
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_mask = c < C
        rm = tl.load(RM + c, mask=c_mask, other=0.0)
        if WRITE_Y:
            scale = tl.load(W + c, mask=c_mask, other=0.0) / tl.sqrt(tl.load(RV + c, mask=c_mask, other=1.0) + eps)
            shift = tl.load(B + c, mask=c_mask, other=0.0) - rm * scale
        acc = tl.zeros([BLOCK_C, BLOCK_HW], dtype=tl.float32)
        acc_sq = tl.zeros([BLOCK_C, BLOCK_HW], dtype=tl.float32)
        row_begin = group * rows_per_group + (pid % SPLIT) * rows_per_split
        row_end = tl.minimum(row_begin + rows_per_split, (group + 1) * rows_per_group)
        for row in range(row_begin, row_end):
            row_offset = tl.cast(row, tl.int64) * stride_n
            for hw_begin in range(0, HW, BLOCK_HW):
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
        out = PARTIAL + pid * 2 * C + c
        tl.store(out, tl.sum(acc, axis=1), mask=c_mask)
        tl.store(out + C, tl.sum(acc_sq, axis=1), mask=c_mask)

    @triton.jit
    def _group_differences(PARTIAL, RV, group, c, c_mask, C, SPLIT, inv_count, BLOCK_S: tl.constexpr):
        """(mean - running_mean, var - running_var) of one group for channels c, from the split partial sums."""
        s1 = tl.zeros(c.shape, dtype=tl.float32)
        s2 = tl.zeros(c.shape, dtype=tl.float32)
        for s_begin in range(0, SPLIT, BLOCK_S):
            split = s_begin + tl.arange(0, BLOCK_S)
            mask = (split < SPLIT)[:, None] & c_mask[None, :]
            part = PARTIAL + (group * SPLIT + split)[:, None] * 2 * C + c[None, :]
            s1 += tl.sum(tl.load(part, mask=mask, other=0.0), axis=0)
            s2 += tl.sum(tl.load(part + C, mask=mask, other=0.0), axis=0)
        d_mu = s1 * inv_count  # the sums are of x - running_mean
        var = tl.maximum(s2 * inv_count - d_mu * d_mu, 0.0)
        d_var = tl.where(c_mask, var - tl.load(RV + c, mask=c_mask, other=0.0), 0.0)
        return d_mu, d_var

    @triton.jit
    def _bn_stat_loss_finalize_kernel(
        PARTIAL, RM, RV, MEAN, COEF_MU, COEF_VAR, LOSS, C, SPLIT, inv_count,
        BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        """One program per group: loss, batch mean, and the backward coefficients of every channel."""
        group = tl.program_id(0)
        sq_mu = tl.zeros([BLOCK_C], dtype=tl.float32)
        sq_var = tl.zeros([BLOCK_C], dtype=tl.float32)
        for c_begin in range(0, C, BLOCK_C):
            c = c_begin + tl.arange(0, BLOCK_C)
            d_mu, d_var = _group_differences(PARTIAL, RV, group, c, c < C, C, SPLIT, inv_count, BLOCK_S)
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
            d_mu, d_var = _group_differences(PARTIAL, RV, group, c, c_mask, C, SPLIT, inv_count, BLOCK_S)
            out = group * C + c
            tl.store(MEAN + out, tl.load(RM + c, mask=c_mask, other=0.0) + d_mu, mask=c_mask)
            tl.store(COEF_MU + out, d_mu * mu_factor, mask=c_mask)
            tl.store(COEF_VAR + out, d_var * var_factor, mask=c_mask)

    @triton.jit
    def _bn_stat_loss_backward_kernel(
        X, DY, DX, GRAD_LOSS, MEAN, COEF_MU, COEF_VAR, W, RV,
        N, C, HW, rows_per_group, rows_per_program, eps,
        stride_n, stride_c, stride_hw, dy_stride_n, dy_stride_c, dy_stride_hw,
        HAS_DY: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
    ):
        """dx = grad_g * (coef_mu + coef_var * (x - mean_g)) [+ dy * w / sqrt(rv + eps)]: rows x channel block."""
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_mask = c < C
        if HAS_DY:
            scale = tl.load(W + c, mask=c_mask, other=0.0) / tl.sqrt(tl.load(RV + c, mask=c_mask, other=1.0) + eps)
        row_begin = tl.program_id(0) * rows_per_program
        row_end = tl.minimum(row_begin + rows_per_program, N)
        for row in range(row_begin, row_end):
            group = row // rows_per_group
            grad = tl.load(GRAD_LOSS + group)
            coef_mu = tl.load(COEF_MU + group * C + c, mask=c_mask, other=0.0) * grad
            coef_var = tl.load(COEF_VAR + group * C + c, mask=c_mask, other=0.0) * grad
            mean = tl.load(MEAN + group * C + c, mask=c_mask, other=0.0)
            row_offset = tl.cast(row, tl.int64) * stride_n
            dy_row_offset = tl.cast(row, tl.int64) * dy_stride_n
            for hw_begin in range(0, HW, BLOCK_HW):
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

    def _prune_tile_configs(configs, named_args, **kwargs):
        """Drop tiles much wider than the tensor (BLOCK_HW > HW, BLOCK_C > C); keep at least one."""
        hw = triton.next_power_of_2(named_args["HW"])
        c = triton.next_power_of_2(named_args["C"])
        kept = [cfg for cfg in configs if cfg.kwargs["BLOCK_HW"] <= max(16, hw) and cfg.kwargs["BLOCK_C"] <= max(4, c)]
        return kept or [min(configs, key=lambda cfg: cfg.kwargs["BLOCK_C"] * cfg.kwargs["BLOCK_HW"])]

    # (BLOCK_C, BLOCK_HW, num_warps): wide-HW tiles for NCHW, wide-C tiles for channels_last and small maps.
    _TILE_CONFIGS = [
        triton.Config({"BLOCK_C": bc, "BLOCK_HW": bhw}, num_warps=w)
        for bc, bhw, w in [(2, 1024, 4), (4, 512, 4), (8, 256, 4), (16, 128, 4), (32, 64, 4), (64, 32, 4),
                           (128, 16, 4), (64, 64, 8), (8, 512, 8)]
    ]
    _tile_autotune = triton.autotune(
        configs=_TILE_CONFIGS, key=["C", "HW", "stride_c"], prune_configs_by={"early_config_prune": _prune_tile_configs}
    )
    _bn_stat_loss_forward_tuned = _tile_autotune(_bn_stat_loss_forward_kernel)
    _bn_stat_loss_backward_tuned = _tile_autotune(_bn_stat_loss_backward_kernel)

# Interpreter (multi-config autotune needs a GPU driver): one tile per shape, about half the channels and half the
# feature map, so that tiny test shapes still cover several channel blocks, HW blocks and row splits.
_INTERPRET_SPLIT = 2


def _interpret_tile(c: int, hw: int) -> dict[str, int]:
    return {"BLOCK_C": min(256, max(4, triton.next_power_of_2(c) // 2)),
            "BLOCK_HW": min(256, max(16, triton.next_power_of_2(hw) // 2))}


@functools.cache
def _num_sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _layout(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``t`` (copied only if neither NCHW- nor NHWC-dense) and its (n, c, merged hw) strides."""
    if t.is_contiguous():
        return t, (t.stride(0), t.stride(1), 1)
    if not t.is_contiguous(memory_format=torch.channels_last):
        t = t.contiguous()
        return t, (t.stride(0), t.stride(1), 1)
    return t, (t.stride(0), 1, t.shape[1])


def _tuned(device: torch.device) -> bool:
    return device.type == "cuda" and not triton_interpret()


def bn_stat_loss_forward(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int,
                         bn_params: tuple[torch.Tensor, torch.Tensor, float] | None = None):
    """Triton launcher: (loss [G], mean [G, C], coef_mu [G, C], coef_var [G, C], y or None).

    ``bn_params`` = (weight, bias, eps) also writes the eval-mode BatchNorm output y (x's dtype and layout).
    """
    x, (stride_n, stride_c, stride_hw) = _layout(x)
    n, c, h, w = x.shape
    hw, rows_per_group = h * w, n // groups
    if _tuned(x.device):  # >= 64K elements per split (all channels), at most ~8 splits per SM over all groups
        rows_per_split = max(triton.cdiv(65536, c * hw), triton.cdiv(rows_per_group * groups, 8 * _num_sms(x.device)))
    else:
        rows_per_split = triton.cdiv(rows_per_group, _INTERPRET_SPLIT)
    split = triton.cdiv(rows_per_group, rows_per_split)
    partial = torch.empty(groups * split, 2, c, device=x.device, dtype=torch.float32)
    y = torch.empty_like(x) if bn_params is not None else None
    weight, bias, eps = bn_params if bn_params is not None else (running_mean, running_mean, 0.0)
    args = (x, y, weight, bias, running_mean, running_var, partial, c, hw, rows_per_group, rows_per_split, split, eps,
            stride_n, stride_c, stride_hw)
    if _tuned(x.device):
        grid = lambda meta: (groups * split, triton.cdiv(c, meta["BLOCK_C"]))
        _bn_stat_loss_forward_tuned[grid](*args, WRITE_Y=y is not None)
    else:
        tile = _interpret_tile(c, hw)
        grid = (groups * split, triton.cdiv(c, tile["BLOCK_C"]))
        _bn_stat_loss_forward_kernel[grid](*args, WRITE_Y=y is not None, **tile)
    loss = torch.empty(groups, device=x.device, dtype=torch.float32)
    mean, coef_mu, coef_var = (torch.empty(groups, c, device=x.device, dtype=torch.float32) for _ in range(3))
    if _tuned(x.device):  # [BLOCK_S, BLOCK_C] tiles of partial sums, about 4K values each
        block_s = min(64, triton.next_power_of_2(split))
        block_c = min(max(16, 4096 // block_s), triton.next_power_of_2(c))
    else:  # two split blocks and two channel blocks where the shape allows
        block_s = max(1, triton.next_power_of_2(split) // 2)
        block_c = min(256, max(16, triton.next_power_of_2(c) // 2))
    _bn_stat_loss_finalize_kernel[(groups,)](partial, running_mean, running_var, mean, coef_mu, coef_var, loss, c,
                                             split, 1.0 / (rows_per_group * hw), BLOCK_S=block_s, BLOCK_C=block_c,
                                             num_warps=8)
    return loss, mean, coef_mu, coef_var, y


def bn_stat_loss_backward(x: torch.Tensor, grad_loss: torch.Tensor, mean: torch.Tensor, coef_mu: torch.Tensor,
                          coef_var: torch.Tensor, dy: torch.Tensor | None = None,
                          bn_scale: tuple[torch.Tensor, torch.Tensor, float] | None = None) -> torch.Tensor:
    """Triton launcher: the loss's input gradient, plus ``dy * weight / sqrt(running_var + eps)`` when ``dy`` is given.

    ``bn_scale`` = (weight, running_var, eps) is required with ``dy``.
    """
    x, (stride_n, stride_c, stride_hw) = _layout(x)
    n, c, h, w = x.shape
    groups = grad_loss.shape[0]
    dx = torch.empty_like(x)
    if dy is not None:
        dy, dy_strides = _layout(dy)
        weight, running_var, eps = bn_scale
    else:
        dy_strides, weight, running_var, eps = (0, 0, 0), mean, mean, 0.0
    rows_per_program = 1 if _tuned(x.device) else triton.cdiv(n, _INTERPRET_SPLIT)
    args = (x, dy, dx, grad_loss.float().contiguous(), mean, coef_mu, coef_var, weight, running_var, n, c, h * w,
            n // groups, rows_per_program, eps, stride_n, stride_c, stride_hw, *dy_strides)
    if _tuned(x.device):
        grid = lambda meta: (n, triton.cdiv(c, meta["BLOCK_C"]))
        _bn_stat_loss_backward_tuned[grid](*args, HAS_DY=dy is not None)
    else:
        tile = _interpret_tile(c, h * w)
        grid = (triton.cdiv(n, rows_per_program), triton.cdiv(c, tile["BLOCK_C"]))
        _bn_stat_loss_backward_kernel[grid](*args, HAS_DY=dy is not None, **tile)
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
    """Torch implementation of ``bn_stat_loss_forward`` without the BN output: (loss, mean, coef_mu, coef_var, None).

    var = E[x^2] - mean^2 from fp32 sums: relative error about 1e-7 * (1 + mean^2 / var) (the Triton kernel
    accumulates x - running_mean instead, which removes most of the cancellation).
    """
    n, c, h, w = x.shape
    count = n // groups * h * w
    sums, squares = (t.view(groups, n // groups, c).sum(1) for t in _row_moments(x))
    mean = sums / count
    var = (squares / count - mean.square()).clamp_min(0)
    loss, coef_mu, coef_var = _coefficients(mean.float(), var.float(), running_mean, running_var, count)
    return loss, mean.float(), coef_mu, coef_var, None


def torch_bn_stat_loss_backward(x: torch.Tensor, grad_loss: torch.Tensor, mean: torch.Tensor, coef_mu: torch.Tensor,
                                coef_var: torch.Tensor, dy: torch.Tensor | None = None,
                                bn_scale: tuple[torch.Tensor, torch.Tensor, float] | None = None) -> torch.Tensor:
    """Torch implementation of ``bn_stat_loss_backward``: one fused multiply-add per element (plus dy's term)."""
    n, c, h, w = x.shape
    groups = grad_loss.shape[0]
    grad = grad_loss.float().view(groups, 1)
    scale = (coef_var * grad).view(groups, 1, c, 1, 1)
    shift = ((coef_mu - coef_var * mean) * grad).view(groups, 1, c, 1, 1)
    xf = x if x.dtype == torch.float32 else x.float()
    dx = torch.addcmul(shift, xf.view(groups, n // groups, c, h, w), scale).view(n, c, h, w)
    if dy is not None:
        weight, running_var, eps = bn_scale
        dx.addcmul_(dy, (weight * torch.rsqrt(running_var + eps)).view(1, c, 1, 1))
    return dx.to(x.dtype)


_IMPLS = {
    "triton": (bn_stat_loss_forward, bn_stat_loss_backward),
    "torch": (torch_bn_stat_loss_forward, torch_bn_stat_loss_backward),
}


def check_bn_inputs(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int,
                    op: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate shapes/dtypes/devices; return the running statistics as fp32 on x's device."""
    if x.dim() != 4:
        raise FastDistillError(f"{op}: x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype not in _FLOAT_DTYPES:
        raise FastDistillError(f"{op}: x must be float32, bfloat16 or float16, got {x.dtype}")
    n, c = x.shape[:2]
    if groups < 1 or n == 0 or n % groups:
        raise FastDistillError(f"{op}: the batch of {n} cannot be split into {groups} equal non-empty groups")
    if x.numel() == 0:
        raise FastDistillError(f"{op}: x has no elements (shape {tuple(x.shape)})")
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t.shape != (c,):
            raise FastDistillError(f"{op}: {name} must have shape ({c},) for x with {c} channels, got {tuple(t.shape)}")
        if t.device != x.device:
            raise FastDistillError(f"{op}: {name} is on {t.device} but x is on {x.device}")
    return running_mean.float().contiguous(), running_var.float().contiguous()


class BNStatLossFunction(torch.autograd.Function):
    """Autograd for ``bn_stat_loss``: forward saves x and per-(group, channel) coefficients for the affine backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int,
                backend: str) -> torch.Tensor:
        loss, mean, coef_mu, coef_var, _ = _IMPLS[backend][0](x, running_mean, running_var, groups)
        ctx.save_for_backward(x, mean, coef_mu, coef_var)
        ctx.backend = backend
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        x, mean, coef_mu, coef_var = ctx.saved_tensors
        dx = _IMPLS[ctx.backend][1](x, grad_loss, mean, coef_mu, coef_var) if ctx.needs_input_grad[0] else None
        return dx, None, None, None, None


def bn_stat_loss(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, groups: int = 1,
                 backend: str | None = None) -> torch.Tensor:
    """Per-group BN-statistic matching loss -> fp32 Tensor[groups]; differentiable in ``x``.

    x: [N, C, H, W], NCHW-contiguous or channels_last, fp32/bf16/fp16 (statistics accumulate in fp32); the batch is
    split into ``groups`` equal contiguous chunks (rows g*N/groups ... (g+1)*N/groups - 1 form group g).
    running_mean / running_var: [C]. ``backend``: "triton", "torch", or None for the automatic choice
    (Triton on CUDA, torch on CPU; ``FASTDISTILL_BACKEND`` overrides).
    """
    running_mean, running_var = check_bn_inputs(x, running_mean, running_var, groups, "bn_stat_loss")
    backend = backend_for("bn_stat_loss", x.device, backend)
    return BNStatLossFunction.apply(x, running_mean, running_var, groups, backend)
