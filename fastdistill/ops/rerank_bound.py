"""The rounding-error bound of the fp32 nearest-centroid scores: the one place every ``assign_modes`` / ``kmeans``
path (torch, C++ CPU kernel, CUDA kernel) takes it from.

Candidates are ranked by the fp32 score ``s_k = ||c_k||^2 - 2 x.c_k``. Each score is off by at most
``2 gamma_{D+2} (||x|| + max ||c||)^2`` (``gamma_n = n u / (1 - n u)``, u = 2^-24 the fp32 unit roundoff), and
``||x|| <= max ||c|| + sqrt(d_best)``. Two scores closer than twice that bound may rank either way, so every path
re-ranks in float64 the centroids whose score is within ``window = slack * (2 max ||c|| + sqrt(d_best))^2`` of the best,
with ``slack = score_slack(D, input_rounding)``. The C++ and CUDA kernels take ``slack`` as an argument
(``torch.ops.fastdistill.assign_modes(..., slack=...)``, likewise ``kmeans_step``) and hold no bound of their own.
"""

from __future__ import annotations

import torch

UNIT_ROUNDOFF = 2.0 ** -24  # fp32
# 2 x 2 gamma (two scores, each off by 2 gamma (||x|| + max ||c||)^2), plus room for the rounding of the norms.
SAFETY = 4.5
# A product of two inputs each rounded by at most r is off by (1 + r)^2 - 1 = 2r + r^2 <= 2.01 r (r <= 2^-7).
PRODUCT_OF_ROUNDED = 2.01
# Relative rounding of fp32 matmul inputs per ``torch.get_float32_matmul_precision()``: TF32 ("high", 10 mantissa
# bits) and bfloat16 ("medium", 7 bits), counted as truncation to be safe; "highest" keeps fp32 inputs.
MATMUL_INPUT_ROUNDING = {"highest": 0.0, "high": 2.0 ** -10, "medium": 2.0 ** -7}


def score_slack(dim: int, input_rounding: float = 0.0) -> float:
    """``slack`` for D-dimensional points when the matmul inputs are rounded by ``input_rounding`` (relative)."""
    n_u = (dim + 2) * UNIT_ROUNDOFF
    return SAFETY * (n_u / (1 - n_u) + PRODUCT_OF_ROUNDED * input_rounding)


def matmul_input_rounding() -> float:
    """Input rounding of torch's fp32 matmuls (torch backend; cuBLAS in the CUDA kernel) at the current precision."""
    return MATMUL_INPUT_ROUNDING.get(torch.get_float32_matmul_precision(), 0.0)


def kernel_slack(points: torch.Tensor) -> float:
    """``slack`` for the compiled kernels on ``points``: the CPU kernel multiplies fp32 inputs exactly as given; the
    CUDA kernel's scores come from cuBLAS, which follows torch's fp32 matmul precision (TF32 when allowed)."""
    return score_slack(points.shape[1], matmul_input_rounding() if points.device.type == "cuda" else 0.0)
