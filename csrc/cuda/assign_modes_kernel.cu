// CUDA kernel of fastdistill::assign_modes (the engine is in nearest.cu).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/nearest.cuh"

namespace fastdistill::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> assign_modes_cuda(const at::Tensor& points, const at::Tensor& centroids,
                                                     const std::optional<at::Tensor>& groups, double slack) {
  check_nearest_inputs("assign_modes", points, centroids, groups);
  at::Tensor index = at::empty({points.size(0)}, points.options().dtype(at::kLong));
  at::Tensor dist = at::empty({points.size(0)}, points.options().dtype(at::kFloat));
  nearest_centroids(points, centroids, groups, slack, index, dist);
  return {index, dist};
}

}  // namespace
}  // namespace fastdistill::cuda

TORCH_LIBRARY_IMPL(fastdistill, CUDA, m) { m.impl("assign_modes", TORCH_FN(fastdistill::cuda::assign_modes_cuda)); }
