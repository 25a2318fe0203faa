"""``assign_modes``: nearest centroid by squared Euclidean distance, for all classes (groups) in one call.

Backends: ``cpp`` (``fastdistill._C``: blocked fp32 distance with the argmin fused, on CPU or CUDA; the engines are
csrc/cpu/nearest.cpp and csrc/cuda/nearest.cu) and ``torch`` (``assign_modes_torch``: a per-group matmul fallback, used
when the extension is missing). Both return the same result:

- Candidates are ranked by the score ``||c||^2 - 2 x.c`` computed in fp32. Wherever the best and second-best scores are
  closer than the score's rounding-error bound (``rerank_bound``, shared by both backends), the centroids within that
  bound are re-ranked by the float64 sum of ``(x - c)^2``. So the answer is the nearest centroid under float64
  arithmetic, not under the cancellation-prone expansion formula.
- **Tie:** two centroids whose float64 squared distances to the point are equal (always the case for duplicate
  centroids); the lowest index wins, as with ``torch.argmin``.
- ``dist`` is the squared distance to that centroid: the float64 sum rounded to float32 (torch and CUDA), or, on the
  CPU kernel, a sum of fp32 squares in short runs accumulated in float64, within a factor ``1 +- 2^-20`` of it (the
  ranking itself stays exact: candidates that close are re-ranked with the float64 sum).

The error bound grows with ``(||x|| + max ||c||)^2``: data far from the origin relative to its spread makes the
re-ranking run more often (still exact, only slower). ``kmeans`` centres each group for this reason. A reduced float32
matmul precision (``torch.set_float32_matmul_precision``: TF32 or bfloat16 inputs) widens the bound the same way.
"""

from __future__ import annotations

import torch

from fastdistill.errors import FastDistillError
from fastdistill.ops.assign_modes_torch import assign_modes_torch
from fastdistill.ops.registry import backend_for
from fastdistill.ops.rerank_bound import kernel_slack

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def assign_modes(points: torch.Tensor, centroids: torch.Tensor, groups: torch.Tensor | None = None,
                 backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every point.

    Args:
        points: [N, D] float32, float16 or bfloat16.
        centroids: [K, D] (``groups`` is None), or [G, K, D] with ``groups``; same dtype and device as ``points``.
        groups: optional int64 [N] with values in [0, G): point i is compared only with ``centroids[groups[i]]``.
        backend: ``"cpp"`` or ``"torch"`` to force one (default: the extension when it is loaded).

    Returns:
        ``(index, dist)``: int64 [N] in [0, K) and float32 [N], the squared distance to that centroid.
    """
    check_inputs(points, centroids, groups)
    if backend_for("assign_modes", points.device, backend) == "cpp":
        index, dist = torch.ops.fastdistill.assign_modes(points, centroids, groups, slack=kernel_slack(points))
    else:
        index, dist = assign_modes_torch(points, centroids, groups)
    if not torch.compiler.is_compiling():
        check_distances(dist, points)
    return index, dist


def check_inputs(points: torch.Tensor, centroids: torch.Tensor, groups: torch.Tensor | None) -> None:
    """Raise FastDistillError, with what to do, for anything ``assign_modes`` cannot take."""
    if not isinstance(points, torch.Tensor) or not isinstance(centroids, torch.Tensor):
        raise FastDistillError("assign_modes: points and centroids must be torch tensors")
    if points.dim() != 2:
        raise FastDistillError(f"assign_modes: points must be [N, D], got shape {tuple(points.shape)}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise FastDistillError(f"assign_modes: points is empty (shape {tuple(points.shape)}); pass at least one point "
                               "with at least one dimension")
    if points.dtype not in DTYPES:
        raise FastDistillError(f"assign_modes: points must be float32, float16 or bfloat16, got {points.dtype}; "
                               "convert with .float()")
    want = "[G, K, D] (groups given)" if groups is not None else "[K, D] (no groups)"
    if centroids.dim() != (3 if groups is not None else 2):
        raise FastDistillError(f"assign_modes: centroids must be {want}, got shape {tuple(centroids.shape)}")
    if centroids.shape[-2] == 0 or (groups is not None and centroids.shape[0] == 0):
        raise FastDistillError(f"assign_modes: centroids is empty (shape {tuple(centroids.shape)})")
    if centroids.shape[-1] != points.shape[1]:
        raise FastDistillError(f"assign_modes: points have D={points.shape[1]} but centroids have "
                               f"D={centroids.shape[-1]}")
    if centroids.dtype != points.dtype:
        raise FastDistillError(f"assign_modes: centroids are {centroids.dtype} but points are {points.dtype}; "
                               "cast one to the other's dtype")
    if centroids.device != points.device:
        raise FastDistillError(f"assign_modes: centroids are on {centroids.device} but points are on "
                               f"{points.device}; move them to one device")
    if groups is not None:
        if not isinstance(groups, torch.Tensor) or groups.dtype != torch.int64 or groups.shape != points.shape[:1]:
            got = f"{groups.dtype} {tuple(groups.shape)}" if isinstance(groups, torch.Tensor) else type(groups).__name__
            raise FastDistillError(f"assign_modes: groups must be an int64 tensor of shape [{points.shape[0]}], "
                                   f"got {got}")
        if groups.device != points.device:
            raise FastDistillError(f"assign_modes: groups are on {groups.device} but points are on {points.device}")
    if torch.compiler.is_compiling():
        return
    if groups is not None:
        low, high = int(groups.min()), int(groups.max())
        if low < 0 or high >= centroids.shape[0]:
            bad = low if low < 0 else high
            raise FastDistillError(f"assign_modes: group id {bad} is outside [0, {centroids.shape[0]}) "
                                   f"(centroids has G={centroids.shape[0]} groups)")
    # One sum is non-finite whenever an element is (or the sum overflows: then look element by element).
    if not bool(torch.isfinite(centroids.sum(dtype=torch.float32))) and not bool(torch.isfinite(centroids).all()):
        raise FastDistillError("assign_modes: centroids contain NaN or Inf; fix or drop those centroids")


def check_distances(dist: torch.Tensor, points: torch.Tensor) -> None:
    """A non-finite distance means a NaN/Inf point (checked here, after the fact, to avoid a pass over all points)."""
    bad = ~torch.isfinite(dist)
    if not bool(bad.any()):
        return
    row = int(bad.nonzero()[0, 0])
    if not bool(torch.isfinite(points[row]).all()):
        raise FastDistillError(f"assign_modes: points contain NaN or Inf (first at row {row}); drop or fix those rows")
    raise FastDistillError(f"assign_modes: squared distance of row {row} overflows float32; rescale the data")
