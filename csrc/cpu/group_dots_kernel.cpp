// CPU kernel of fastdistill::group_dots (the engine is in nearest.cpp).
#include <torch/library.h>

#include "checks.h"
#include "cpu/nearest.h"

namespace fastdistill::cpu {
namespace {

at::Tensor group_dots_cpu(const at::Tensor& points, const at::Tensor& centroids,
                          const std::optional<at::Tensor>& groups) {
  const NearestShape s = check_nearest_inputs("group_dots", points, centroids, groups);
  at::Tensor dots = at::empty({s.N, s.K}, points.options().dtype(at::kFloat));
  at::Tensor unused;
  nearest_centroids(points, centroids, groups, /*slack=*/0.0, unused, unused, nullptr, &dots);  // no ranking
  return dots;
}

}  // namespace
}  // namespace fastdistill::cpu

TORCH_LIBRARY_IMPL(fastdistill, CPU, m) { m.impl("group_dots", TORCH_FN(fastdistill::cpu::group_dots_cpu)); }
