// CPU kernel of fastdistill::kmeans_step (the assignment engine is in nearest.cpp).
#include <torch/library.h>

#include "checks.h"
#include "cpu/nearest.h"

namespace fastdistill::cpu {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kmeans_step_cpu(const at::Tensor& points,
                                                                           const at::Tensor& centroids,
                                                                           const std::optional<at::Tensor>& groups,
                                                                           double slack) {
  const NearestShape s = check_nearest_inputs("kmeans_step", points, centroids, groups);
  at::Tensor index = at::empty({s.N}, points.options().dtype(at::kLong));
  at::Tensor dist = at::empty({s.N}, points.options().dtype(at::kFloat));
  at::Tensor sums = at::zeros({s.G, s.K, s.D}, points.options().dtype(at::kDouble));
  nearest_centroids(points, centroids, groups, slack, index, dist, &sums, nullptr);
  at::Tensor counts = at::zeros({s.G, s.K}, points.options().dtype(at::kLong));
  const int64_t* idx = index.const_data_ptr<int64_t>();
  int64_t* cnt = counts.data_ptr<int64_t>();
  if (groups.has_value()) {
    const at::Tensor gt = groups->contiguous();
    const int64_t* gid = gt.const_data_ptr<int64_t>();
    for (int64_t i = 0; i < s.N; ++i) ++cnt[gid[i] * s.K + idx[i]];
  } else {
    for (int64_t i = 0; i < s.N; ++i) ++cnt[idx[i]];
  }
  if (!groups.has_value()) {
    sums = sums.view({s.K, s.D});
    counts = counts.view({s.K});
  }
  return {index, dist, sums, counts};
}

}  // namespace
}  // namespace fastdistill::cpu

TORCH_LIBRARY_IMPL(fastdistill, CPU, m) { m.impl("kmeans_step", TORCH_FN(fastdistill::cpu::kmeans_step_cpu)); }
