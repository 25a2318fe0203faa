"""Fake (meta) implementations of the ops of ``fastdistill._C``: output shapes and dtypes only, for ``torch.compile``
and FakeTensor tracing.

``fastdistill._extension`` imports this module right after it loads ``_C`` (the ops must exist before their fakes are
registered); the C++ schemas name it with ``m.set_python_module`` (csrc/schema.h), and torch checks that the fakes are
registered from here.
"""

from __future__ import annotations

import torch


@torch.library.register_fake("fastdistill::assign_modes")
def _assign_modes(points: torch.Tensor, centroids: torch.Tensor, groups: torch.Tensor | None = None, *,
                  slack: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = points.shape[0]
    return points.new_empty(n, dtype=torch.int64), points.new_empty(n, dtype=torch.float32)


@torch.library.register_fake("fastdistill::kmeans_step")
def _kmeans_step(points: torch.Tensor, centroids: torch.Tensor, groups: torch.Tensor | None = None, *,
                 slack: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n = points.shape[0]
    return (points.new_empty(n, dtype=torch.int64), points.new_empty(n, dtype=torch.float32),
            centroids.new_empty(centroids.shape, dtype=torch.float64),
            centroids.new_empty(centroids.shape[:-1], dtype=torch.int64))


@torch.library.register_fake("fastdistill::group_dots")
def _group_dots(points: torch.Tensor, centroids: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    return points.new_empty(points.shape[0], centroids.shape[-2], dtype=torch.float32)
