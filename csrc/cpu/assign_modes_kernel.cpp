// CPU kernel of fastdistill::assign_modes (the engine is in nearest.cpp).
#include <torch/library.h>

#include "checks.h"
#include "cpu/nearest.h"

namespace fastdistill::cpu {
namespace {

std::tuple<at::Tensor, at::Tensor> assign_modes_cpu(const at::Tensor& points, const at::Tensor& centroids,
                                                    const std::optional<at::Tensor>& groups, double slack) {
  check_nearest_inputs("assign_modes", points, centroids, groups);
  at::Tensor index = at::empty({points.size(0)}, points.options().dtype(at::kLong));
  at::Tensor dist = at::empty({points.size(0)}, points.options().dtype(at::kFloat));
  nearest_centroids(points, centroids, groups, slack, index, dist, nullptr, nullptr);
  return {index, dist};
}

}  // namespace
}  // namespace fastdistill::cpu

TORCH_LIBRARY_IMPL(fastdistill, CPU, m) { m.impl("assign_modes", TORCH_FN(fastdistill::cpu::assign_modes_cpu)); }
