"""Torch backend of ``fastdistill::kmeans_step`` (one Lloyd iteration's data pass), used without ``fastdistill._C``."""

from __future__ import annotations

import torch

from fastdistill.ops.assign_modes_torch import assign_modes_torch

_ROWS_PER_CHUNK = 1 << 16  # rows per index_add_ (bounds the float64 copy of the points)


def kmeans_step_torch(x: torch.Tensor, centroids: torch.Tensor,
                      groups: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``kmeans_step`` in torch for centroids [G, k, D] (``groups``: ids 0..G-1, or None for G = 1): assignment, then
    float64 sums per centroid (group-sorted points, in row order) -> (index, dist, sums [G, k, D], sizes [G, k])."""
    index, dist = assign_modes_torch(x, centroids if groups is not None else centroids[0], groups)
    num_groups, k, dim = centroids.shape
    key = index if groups is None else groups * k + index
    sums = torch.zeros(num_groups * k, dim, dtype=torch.float64, device=x.device)
    for lo in range(0, x.shape[0], _ROWS_PER_CHUNK):
        sums.index_add_(0, key[lo:lo + _ROWS_PER_CHUNK], x[lo:lo + _ROWS_PER_CHUNK].double())
    sizes = torch.bincount(key, minlength=num_groups * k)
    return index, dist, sums.view(num_groups, k, dim), sizes.view(num_groups, k)
