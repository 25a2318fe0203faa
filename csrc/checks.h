// Argument checks shared by the CPU and CUDA kernels. The Python wrappers check first and raise FastDistillError with
// friendlier messages; these keep direct torch.ops.fastdistill calls memory-safe.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace fastdistill {

struct NearestShape {
  int64_t N, D, G, K;
};

inline NearestShape check_nearest_inputs(const char* op, const at::Tensor& points, const at::Tensor& centroids,
                                         const std::optional<at::Tensor>& groups) {
  TORCH_CHECK(points.dim() == 2, op, ": points must be [N, D], got shape ", points.sizes());
  const bool grouped = groups.has_value();
  TORCH_CHECK(centroids.dim() == (grouped ? 3 : 2), op, ": centroids must be ", grouped ? "[G, K, D]" : "[K, D]",
              ", got shape ", centroids.sizes());
  TORCH_CHECK(centroids.size(-1) == points.size(1), op, ": points have D=", points.size(1), " but centroids have D=",
              centroids.size(-1));
  TORCH_CHECK(centroids.size(-2) > 0 && points.size(1) > 0, op, ": need at least one centroid and one dimension");
  const auto dtype = points.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": points must be float32, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(centroids.scalar_type() == dtype, op, ": centroids (", centroids.scalar_type(),
              ") must have the dtype of points (", dtype, ")");
  TORCH_CHECK(centroids.device() == points.device(), op, ": centroids are on ", centroids.device(),
              " but points are on ", points.device());
  if (grouped) {
    const at::Tensor& g = *groups;
    TORCH_CHECK(g.dim() == 1 && g.size(0) == points.size(0), op, ": groups must be [N] with N=", points.size(0),
                ", got shape ", g.sizes());
    TORCH_CHECK(g.scalar_type() == at::kLong, op, ": groups must be int64, got ", g.scalar_type());
    TORCH_CHECK(g.device() == points.device(), op, ": groups are on ", g.device(), " but points are on ",
                points.device());
  }
  return {points.size(0), points.size(1), grouped ? centroids.size(0) : 1, centroids.size(-2)};
}

}  // namespace fastdistill
