// CPU nearest-centroid engine shared by assign_modes, kmeans_step and group_dots (nearest.cpp).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace fastdistill::cpu {

// For every point, the nearest centroid of its group (squared Euclidean) and that squared distance.
//
// Scores ||c||^2 - 2 x.c are computed in blocks with fp32 accumulation and the argmin fused (no N x K matrix). When
// the best and second-best scores are closer than their rounding-error bound, slack * (2 max ||c|| + ||x - c_best||)^2
// (`slack`: see fastdistill/ops/rerank_bound.py), every centroid within that bound is re-scored with
// IsaKernels::sqdist (fp32 squares summed in short runs, then in float64: within 1 +- 2^-20 of the exact value) and the
// smallest wins; candidates within that error of each other are ranked by the float64 sum of (x - c)^2, ties going to
// the lowest index. The returned distance is the winner's sqdist (or float64 sum), rounded to float32.
//
// If `sums` is given ([G, K, D] float64, zero-filled) every point is also added to its centroid's row, in a fixed
// order that does not depend on the number of threads. If `dots` is given ([N, K] float32) it receives x.c of every
// point with every centroid of its group instead, and index / dist are not used.
void nearest_centroids(const at::Tensor& points, const at::Tensor& centroids, const std::optional<at::Tensor>& groups,
                       double slack, at::Tensor& index, at::Tensor& dist, at::Tensor* sums, at::Tensor* dots);

// Name of the instruction set the CPU kernels will use on this machine ("avx512", "avx2" or "generic").
const char* best_isa();

}  // namespace fastdistill::cpu
