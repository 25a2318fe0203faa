// CUDA nearest-centroid engine shared by assign_modes and kmeans_step (nearest.cu; same contract as cpu/nearest.h).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace fastdistill::cuda {

// index [N] int64 and dist [N] float32 (preallocated on the points' device) of the nearest centroid of each point's
// group: fp32 scores ||c||^2 - 2 x.c from one batched GEMM, then a float64 check of (x - c)^2 wherever the two best
// scores are closer than their error bound slack * (2 max ||c|| + ||x - c_best||)^2 (`slack`: see
// fastdistill/ops/rerank_bound.py; it must cover TF32 inputs when torch allows them); ties go to the lowest index.
void nearest_centroids(const at::Tensor& points, const at::Tensor& centroids, const std::optional<at::Tensor>& groups,
                       double slack, at::Tensor& index, at::Tensor& dist);

// CUDART_VERSION the kernels were compiled with.
int built_cuda_version();

}  // namespace fastdistill::cuda
