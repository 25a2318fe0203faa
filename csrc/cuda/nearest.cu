// CUDA nearest-centroid engine shared by assign_modes and kmeans_step (see nearest.cuh).
//
// Scores come from one batched GEMM (cuBLAS through at::bmm) over the points laid out as [G, n, D]; a finalize kernel
// (one warp per point) takes the top-2 of each score row and does the float64 check. A tiled SIMT kernel with the
// top-2 fused was also written and measured on an H100 (benchmarks/RESULTS.md, "assign_modes / kmeans (CUDA)"): it
// was slower at every shape (up to 3.6x at K=50, D=4096), so only the GEMM path is kept.
#include <ATen/ATen.h>
#include <ATen/Dispatch_v2.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <cmath>

#include "checks.h"
#include "cuda/nearest.cuh"

namespace fastdistill::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

// Running best and second-best score of one point (second best may equal the best: a tie to re-check).
struct Top2 {
  float s1, s2;
  int i1;
};

__device__ __forceinline__ Top2 top2_empty() {
  return {INFINITY, INFINITY, 0};
}

__device__ __forceinline__ void top2_push(Top2& t, float s, int i) {
  if (s < t.s1 || (s == t.s1 && i < t.i1)) {
    t.s2 = t.s1;
    t.s1 = s;
    t.i1 = i;
  } else if (s < t.s2) {
    t.s2 = s;
  }
}

__device__ __forceinline__ Top2 top2_merge(Top2 a, Top2 b) {
  if (b.s1 < a.s1 || (b.s1 == a.s1 && b.i1 < a.i1)) {
    const Top2 t = a;
    a = b;
    b = t;
  }
  a.s2 = fminf(a.s2, b.s1);
  return a;
}

__device__ __forceinline__ Top2 top2_shfl_merge(Top2 t, int offset) {
  Top2 o;
  o.s1 = __shfl_xor_sync(0xffffffffu, t.s1, offset);
  o.s2 = __shfl_xor_sync(0xffffffffu, t.s2, offset);
  o.i1 = __shfl_xor_sync(0xffffffffu, t.i1, offset);
  return top2_merge(t, o);
}

// sum_d (x[d] - c[d])^2 in float64 over one warp; the reduction order is fixed, so the result is reproducible.
template <typename T>
__device__ __forceinline__ double warp_sqdist(const T* __restrict__ x, const float* __restrict__ c, int64_t D,
                                              int lane) {
  double acc = 0.0;
  for (int64_t d = lane; d < D; d += 32) {
    const double e = static_cast<double>(static_cast<float>(x[d])) - static_cast<double>(c[d]);
    acc = fma(e, e, acc);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
  return acc;
}

// One warp per point: the top-2 of its score row (||c||^2 - 2 x.c from the GEMM), the float64 distance of the best,
// and, when the two best are within the error window, a float64 re-ranking of the centroids inside that window.
template <typename T>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    finalize_kernel(const T* __restrict__ x, const int64_t* __restrict__ groups, const float* __restrict__ c,
                    const float* __restrict__ cnorm, const double* __restrict__ cmax, int64_t N, int64_t K, int64_t D,
                    double slack, const float* __restrict__ dots, const int64_t* __restrict__ dot_row,
                    int64_t* __restrict__ index, float* __restrict__ dist) {
  const int lane = threadIdx.x % 32;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= N) return;
  const int64_t g = groups != nullptr ? groups[i] : 0;
  const float* cg = c + g * K * D;
  const float* cn = cnorm + g * K;
  const float* row = dots + dot_row[i] * K;
  Top2 t = top2_empty();
  for (int64_t k = lane; k < K; k += 32) top2_push(t, cn[k] - 2.f * row[k], static_cast<int>(k));
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) t = top2_shfl_merge(t, offset);
  const T* xr = x + i * D;
  int64_t bestk = t.i1;
  double dbest = warp_sqdist(xr, cg + bestk * D, D, lane);
  const double r = 2.0 * cmax[g] + sqrt(dbest);
  const double window = slack * r * r;
  if (!(static_cast<double>(t.s2) - t.s1 > window)) {
    const double limit = static_cast<double>(t.s1) + window;
    const int64_t first = bestk;
    for (int64_t k = 0; k < K; ++k) {
      if (k == first || !(static_cast<double>(cn[k] - 2.f * row[k]) <= limit)) continue;
      const double dk = warp_sqdist(xr, cg + k * D, D, lane);
      if (dk < dbest || (dk == dbest && k < bestk)) {
        dbest = dk;
        bestk = k;
      }
    }
  }
  if (lane == 0) {
    index[i] = bestk;
    dist[i] = static_cast<float>(dbest);
  }
}

}  // namespace

int built_cuda_version() { return CUDART_VERSION; }

void nearest_centroids(const at::Tensor& points, const at::Tensor& centroids, const std::optional<at::Tensor>& groups,
                       double slack, at::Tensor& index, at::Tensor& dist) {
  const NearestShape s = check_nearest_inputs("assign_modes", points, centroids, groups);
  TORCH_CHECK(std::isfinite(slack) && slack >= 0, "assign_modes: slack must be a finite number >= 0, got ", slack);
  const int64_t N = s.N, D = s.D, G = s.G, K = s.K;
  if (N == 0) return;
  const c10::cuda::OptionalCUDAGuard guard(points.device());
  const at::Tensor x = points.contiguous();
  const at::Tensor c = centroids.to(at::kFloat).contiguous().view({G, K, D});
  const at::Tensor norm2 = at::linalg_vector_norm(c, 2, at::IntArrayRef{2}, false, at::kDouble).square_();  // ||c||^2 in float64
  const at::Tensor cnorm = norm2.to(at::kFloat).contiguous();
  const at::Tensor cmax = norm2.amax(1).sqrt_().contiguous();
  at::Tensor gids;
  if (groups.has_value()) {
    gids = groups->contiguous();
    const auto [low, high] = at::aminmax(gids);
    TORCH_CHECK(low.item<int64_t>() >= 0 && high.item<int64_t>() < G, "assign_modes: group ids must be in [0, ", G,
                ")");
  }

  // Scores x.c of every point with its group's centroids. Group-sorted fp32 points of equal-sized groups (or no
  // groups) already are the [G, n, D] batch; otherwise the points are gathered into a zero-padded copy.
  at::Tensor dots, dot_row;
  bool batch_view = !groups.has_value();
  int64_t longest = N;
  at::Tensor counts;
  if (groups.has_value()) {
    counts = at::bincount(gids, {}, G);
    longest = counts.max().item<int64_t>();
    batch_view = counts.min().item<int64_t>() == longest &&
                 (N < 2 || gids.slice(0, 1).ge(gids.slice(0, 0, N - 1)).all().item<bool>());
  }
  if (batch_view) {
    dots = at::bmm(x.to(at::kFloat).view({G, longest, D}), c.transpose(1, 2));
    dot_row = at::arange(N, x.options().dtype(at::kLong));
  } else {
    const at::Tensor order = at::argsort(gids, /*stable=*/true);
    const at::Tensor starts = counts.cumsum(0) - counts;
    const at::Tensor sorted_groups = gids.index_select(0, order);
    const at::Tensor slot =
        sorted_groups * longest + at::arange(N, gids.options()) - starts.index_select(0, sorted_groups);
    dot_row = at::empty_like(gids).index_copy_(0, order, slot);
    at::Tensor padded = at::zeros({G * longest, D}, x.options().dtype(at::kFloat));
    padded.index_copy_(0, slot, x.index_select(0, order).to(at::kFloat));
    dots = at::bmm(padded.view({G, longest, D}), c.transpose(1, 2));
  }
  dots = dots.contiguous();

  const int64_t blocks = (N + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int64_t* gptr = gids.defined() ? gids.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_V2(x.scalar_type(), "assign_modes", AT_WRAP([&] {
    finalize_kernel<scalar_t><<<blocks, kWarpsPerBlock * 32, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), gptr, c.const_data_ptr<float>(), cnorm.const_data_ptr<float>(),
        cmax.const_data_ptr<double>(), N, K, D, slack, dots.const_data_ptr<float>(), dot_row.const_data_ptr<int64_t>(),
        index.data_ptr<int64_t>(), dist.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }), at::kFloat, at::kHalf, at::kBFloat16);
}

}  // namespace fastdistill::cuda
