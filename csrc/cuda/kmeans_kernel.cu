// CUDA kernel of fastdistill::kmeans_step: the assignment of assign_modes, then per-centroid float64 sums computed
// without atomics (points sorted by centroid, each output column summed in point order), hence bit-reproducible.
#include <ATen/ATen.h>
#include <ATen/Dispatch_v2.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/nearest.cuh"

namespace fastdistill::cuda {
namespace {

constexpr int kColumns = 128;  // threads per block; one thread per (centroid, column)

template <typename T>
__global__ void __launch_bounds__(kColumns)
    segment_sums_kernel(const T* __restrict__ x, const int64_t* __restrict__ order,
                        const int64_t* __restrict__ seg_offsets, int64_t D, double* __restrict__ sums) {
  const int64_t seg = blockIdx.x;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * kColumns + threadIdx.x;
  if (d >= D) return;
  double acc = 0.0;
  for (int64_t r = seg_offsets[seg]; r < seg_offsets[seg + 1]; ++r)
    acc += static_cast<double>(static_cast<float>(x[order[r] * D + d]));
  sums[seg * D + d] = acc;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kmeans_step_cuda(const at::Tensor& points,
                                                                            const at::Tensor& centroids,
                                                                            const std::optional<at::Tensor>& groups,
                                                                            double slack) {
  const NearestShape s = check_nearest_inputs("kmeans_step", points, centroids, groups);
  const c10::cuda::OptionalCUDAGuard guard(points.device());
  at::Tensor index = at::empty({s.N}, points.options().dtype(at::kLong));
  at::Tensor dist = at::empty({s.N}, points.options().dtype(at::kFloat));
  at::Tensor sums = at::zeros({s.G * s.K, s.D}, points.options().dtype(at::kDouble));
  at::Tensor counts = at::zeros({s.G * s.K}, points.options().dtype(at::kLong));
  if (s.N > 0) {
    nearest_centroids(points, centroids, groups, slack, index, dist);
    const at::Tensor key = groups.has_value() ? groups->mul(s.K).add_(index) : index;
    counts = at::bincount(key, {}, s.G * s.K);
    const at::Tensor order = at::argsort(key, /*stable=*/true);
    const at::Tensor seg_offsets = at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)});
    const at::Tensor x = points.contiguous();
    const dim3 grid(static_cast<unsigned>(s.G * s.K), static_cast<unsigned>((s.D + kColumns - 1) / kColumns));
    AT_DISPATCH_V2(x.scalar_type(), "kmeans_step", AT_WRAP([&] {
      segment_sums_kernel<scalar_t><<<grid, kColumns, 0, c10::cuda::getCurrentCUDAStream()>>>(
          x.const_data_ptr<scalar_t>(), order.const_data_ptr<int64_t>(), seg_offsets.const_data_ptr<int64_t>(), s.D,
          sums.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }), at::kFloat, at::kHalf, at::kBFloat16);
  }
  if (groups.has_value()) return {index, dist, sums.view({s.G, s.K, s.D}), counts.view({s.G, s.K})};
  return {index, dist, sums.view({s.K, s.D}), counts.view({s.K})};
}

}  // namespace
}  // namespace fastdistill::cuda

TORCH_LIBRARY_IMPL(fastdistill, CUDA, m) { m.impl("kmeans_step", TORCH_FN(fastdistill::cuda::kmeans_step_cuda)); }
