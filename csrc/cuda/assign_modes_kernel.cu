// CUDA kernel of fastdistill::assign_modes and the nearest-centroid engine it shares with kmeans_step.
#include <ATen/ATen.h>
#include <ATen/Dispatch_v2.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "checks.h"
#include "cuda/nearest.cuh"

namespace fastdistill::cuda {
namespace {

constexpr int kThreads = 256;  // tiled kernel: 256 threads, each owning a 4 x 4 block of (point, centroid) scores
constexpr int kBK = 16;        // D values per shared-memory stage
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

// Group of tile `b` (tile_offsets[g] <= b < tile_offsets[g + 1]).
__device__ __forceinline__ int64_t tile_group(const int64_t* tile_offsets, int64_t G, int64_t b) {
  int64_t lo = 0, hi = G;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (tile_offsets[mid] <= b) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// One block: BM = 4 * (256 / (BN / 4)) points of one group against all K centroids of the group, BN at a time, with
// the top-2 fused. Writes best / s1 / s2 per point (original row order).
template <typename T, int BN>
__global__ void __launch_bounds__(kThreads)
    tiled_scores_kernel(const T* __restrict__ x, const int64_t* __restrict__ order, const float* __restrict__ c,
                        const float* __restrict__ cnorm, const int64_t* __restrict__ offsets,
                        const int64_t* __restrict__ tile_offsets, int64_t G, int64_t K, int64_t D,
                        int64_t* __restrict__ best, float* __restrict__ s1, float* __restrict__ s2) {
  constexpr int TX = BN / 4, TY = kThreads / TX, BM = 4 * TY;
  __shared__ __align__(16) float As[kBK][BM + 4];
  __shared__ __align__(16) float Bs[kBK][BN + 4];
  __shared__ int64_t src[BM];

  const int64_t b = blockIdx.x;
  if (b >= tile_offsets[G]) return;
  const int64_t g = tile_group(tile_offsets, G, b);
  const int64_t start = offsets[g] + (b - tile_offsets[g]) * BM;
  const int64_t left = offsets[g + 1] - start;
  const int rows = left < BM ? static_cast<int>(left) : BM;
  const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
  for (int r = tid; r < BM; r += kThreads) src[r] = r < rows ? (order != nullptr ? order[start + r] : start + r) : -1;
  __syncthreads();

  const float* cg = c + g * K * D;
  const float* cn = cnorm + g * K;
  const int lr = tid / kBK, ld = tid % kBK;  // loader: row lr + 16 q, column ld of the stage
  constexpr int XQ = BM / 16, CQ = BN / 16;

  Top2 top[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) top[i] = top2_empty();

  for (int64_t n0 = 0; n0 < K; n0 += BN) {
    float acc[4][4] = {};
    float ra[XQ], rb[CQ];
    auto fetch = [&](int64_t d0) {
      const int64_t d = d0 + ld;
#pragma unroll
      for (int q = 0; q < XQ; ++q) {
        const int64_t row = src[lr + 16 * q];
        ra[q] = (row >= 0 && d < D) ? static_cast<float>(x[row * D + d]) : 0.f;
      }
#pragma unroll
      for (int q = 0; q < CQ; ++q) {
        const int64_t col = n0 + lr + 16 * q;
        rb[q] = (col < K && d < D) ? cg[col * D + d] : 0.f;
      }
    };
    fetch(0);
    for (int64_t d0 = 0; d0 < D; d0 += kBK) {
#pragma unroll
      for (int q = 0; q < XQ; ++q) As[ld][lr + 16 * q] = ra[q];
#pragma unroll
      for (int q = 0; q < CQ; ++q) Bs[ld][lr + 16 * q] = rb[q];
      __syncthreads();
      if (d0 + kBK < D) fetch(d0 + kBK);  // next stage in flight while this one is multiplied
#pragma unroll
      for (int k = 0; k < kBK; ++k) {
        const float4 a = *reinterpret_cast<const float4*>(&As[k][ty * 4]);
        const float4 w = *reinterpret_cast<const float4*>(&Bs[k][tx * 4]);
        const float av[4] = {a.x, a.y, a.z, a.w}, wv[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], wv[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t col = n0 + tx * 4 + j;
      if (col < K) {
        const float norm = cn[col];
#pragma unroll
        for (int i = 0; i < 4; ++i) top2_push(top[i], norm - 2.f * acc[i][j], static_cast<int>(col));
      }
    }
  }
  // The TX threads sharing rows are consecutive lanes of one warp.
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int offset = TX / 2; offset > 0; offset /= 2) top[i] = top2_shfl_merge(top[i], offset);
  if (tx == 0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = ty * 4 + i;
      if (r < rows) {
        const int64_t row = src[r];
        best[row] = top[i].i1;
        s1[row] = top[i].s1;
        s2[row] = top[i].s2;
      }
    }
  }
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

// One warp per point: top-2 from a score row (GEMM path) or from the tiled kernel, the float64 distance of the best,
// and, when the two best are within the error window, a float64 re-ranking of the centroids inside that window
// (every centroid for the tiled path, which keeps no scores).
template <typename T, bool kFromScores>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    finalize_kernel(const T* __restrict__ x, const int64_t* __restrict__ groups, const float* __restrict__ c,
                    const float* __restrict__ cnorm, const double* __restrict__ cmax, int64_t N, int64_t K, int64_t D,
                    double slack, const float* __restrict__ scores, const int64_t* __restrict__ score_row,
                    const float* __restrict__ s1, const float* __restrict__ s2, int64_t* __restrict__ index,
                    float* __restrict__ dist) {
  const int lane = threadIdx.x % 32;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= N) return;
  const int64_t g = groups != nullptr ? groups[i] : 0;
  const float* cg = c + g * K * D;
  const float* cn = cnorm + g * K;
  const float* row = nullptr;
  Top2 t;
  if constexpr (kFromScores) {
    row = scores + score_row[i] * K;
    t = top2_empty();
    for (int64_t k = lane; k < K; k += 32) top2_push(t, cn[k] - 2.f * row[k], static_cast<int>(k));
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) t = top2_shfl_merge(t, offset);
  } else {
    t = {s1[i], s2[i], static_cast<int>(index[i])};
  }
  const T* xr = x + i * D;
  int64_t bestk = t.i1;
  double dbest = warp_sqdist(xr, cg + bestk * D, D, lane);
  const double r = 2.0 * cmax[g] + sqrt(dbest);
  const double window = slack * r * r;
  if (!(static_cast<double>(t.s2) - t.s1 > window)) {
    const double limit = static_cast<double>(t.s1) + window;
    const int64_t first = bestk;
    for (int64_t k = 0; k < K; ++k) {
      if (k == first) continue;
      if constexpr (kFromScores) {
        if (!(static_cast<double>(cn[k] - 2.f * row[k]) <= limit)) continue;
      }
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

enum class Impl { tiled, gemm, automatic };

Impl requested_impl() {
  const char* want = std::getenv("FASTDISTILL_CUDA_ASSIGN");
  if (want == nullptr || *want == '\0' || std::strcmp(want, "auto") == 0) return Impl::automatic;
  if (std::strcmp(want, "tiled") == 0) return Impl::tiled;
  TORCH_CHECK(std::strcmp(want, "gemm") == 0, "FASTDISTILL_CUDA_ASSIGN=", want, " is not one of auto, tiled, gemm");
  return Impl::gemm;
}

// Centroids per tile of the tiled kernel (BN) and points per tile (BM) for K centroids.
int tile_bn(int64_t K) { return K <= 16 ? 16 : K <= 32 ? 32 : 64; }
int tile_bm(int64_t K) { return 4 * (kThreads / (tile_bn(K) / 4)); }

template <typename T, int BN>
void launch_tiled(const at::Tensor& x, const at::Tensor& order, const at::Tensor& c, const at::Tensor& cnorm,
                  const at::Tensor& offsets, const at::Tensor& tile_offsets, int64_t G, int64_t K, int64_t D,
                  at::Tensor& best, at::Tensor& s1, at::Tensor& s2) {
  const int64_t BM = tile_bm(K);
  const int64_t blocks = (x.size(0) + BM - 1) / BM + G;  // upper bound on the number of tiles
  tiled_scores_kernel<T, BN><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      x.const_data_ptr<T>(), order.defined() ? order.const_data_ptr<int64_t>() : nullptr, c.const_data_ptr<float>(),
      cnorm.const_data_ptr<float>(), offsets.const_data_ptr<int64_t>(), tile_offsets.const_data_ptr<int64_t>(), G, K,
      D, best.data_ptr<int64_t>(), s1.data_ptr<float>(), s2.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

int built_cuda_version() { return CUDART_VERSION; }

void nearest_centroids(const at::Tensor& points, const at::Tensor& centroids, const std::optional<at::Tensor>& groups,
                       at::Tensor& index, at::Tensor& dist) {
  const NearestShape s = check_nearest_inputs("assign_modes", points, centroids, groups);
  const int64_t N = s.N, D = s.D, G = s.G, K = s.K;
  if (N == 0) return;
  const c10::cuda::OptionalCUDAGuard guard(points.device());
  const at::Tensor x = points.contiguous();
  const at::Tensor c = centroids.to(at::kFloat).contiguous().view({G, K, D});
  const at::Tensor c64 = c.to(at::kDouble);
  const at::Tensor cnorm = c64.square().sum(2).to(at::kFloat).contiguous();
  const at::Tensor cmax = c64.square().sum(2).sqrt().amax(1).contiguous();
  at::Tensor gids;
  if (groups.has_value()) {
    gids = groups->contiguous();
    const auto [low, high] = at::aminmax(gids);
    TORCH_CHECK(low.item<int64_t>() >= 0 && high.item<int64_t>() < G, "assign_modes: group ids must be in [0, ", G,
                ")");
  }

  // Group sizes, and whether group-sorted points of equal-sized groups already are the [G, n, D] batch of a bmm.
  const Impl want = requested_impl();
  const bool fp32 = x.scalar_type() == at::kFloat;
  at::Tensor counts;
  int64_t longest = N;
  bool batch_view = !groups.has_value();
  if (groups.has_value() && (want == Impl::gemm || (want == Impl::automatic && fp32))) {
    counts = at::bincount(gids, {}, G);
    longest = counts.max().item<int64_t>();
    batch_view = counts.min().item<int64_t>() == longest &&
                 (N < 2 || gids.slice(0, 1).ge(gids.slice(0, 0, N - 1)).all().item<bool>());
  }
  // By default the cuBLAS path runs when it needs no copy of the points; the tiled kernel otherwise.
  const bool gemm = want == Impl::gemm || (want == Impl::automatic && fp32 && batch_view);

  // Error bound of an fp32 score (see cpu/assign_modes_kernel.cpp); cuBLAS may use TF32 if torch allows it.
  const double u = std::ldexp(1.0, -24);
  double gamma = (D + 2) * u / (1.0 - (D + 2) * u);
  if (gemm && at::globalContext().allowTF32CuBLAS()) gamma += std::ldexp(1.0, -9);
  const double slack = 4.5 * gamma;
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t fin_blocks = (N + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int64_t* gptr = gids.defined() ? gids.const_data_ptr<int64_t>() : nullptr;

  if (gemm) {
    // Scores x.c for every point against its group's centroids, then the finalize kernel reads them.
    at::Tensor dots, score_row;
    if (batch_view) {
      dots = at::bmm(x.to(at::kFloat).view({G, longest, D}), c.transpose(1, 2));
      score_row = at::arange(N, x.options().dtype(at::kLong));
    } else {
      const at::Tensor order = at::argsort(gids, /*stable=*/true);
      const at::Tensor starts = counts.cumsum(0) - counts;
      const at::Tensor sorted_groups = gids.index_select(0, order);
      const at::Tensor slot =
          sorted_groups * longest + at::arange(N, gids.options()) - starts.index_select(0, sorted_groups);
      score_row = at::empty_like(gids).index_copy_(0, order, slot);
      at::Tensor padded = at::zeros({G * longest, D}, x.options().dtype(at::kFloat));
      padded.index_copy_(0, slot, x.index_select(0, order).to(at::kFloat));
      dots = at::bmm(padded.view({G, longest, D}), c.transpose(1, 2));
    }
    dots = dots.contiguous();
    AT_DISPATCH_V2(x.scalar_type(), "assign_modes_gemm", AT_WRAP([&] {
      finalize_kernel<scalar_t, true><<<fin_blocks, kWarpsPerBlock * 32, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), gptr, c.const_data_ptr<float>(), cnorm.const_data_ptr<float>(),
          cmax.const_data_ptr<double>(), N, K, D, slack, dots.const_data_ptr<float>(),
          score_row.const_data_ptr<int64_t>(), nullptr, nullptr, index.data_ptr<int64_t>(), dist.data_ptr<float>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }), at::kFloat, at::kHalf, at::kBFloat16);
    return;
  }

  at::Tensor order, offsets, tile_offsets;
  if (groups.has_value()) {
    order = at::argsort(gids, /*stable=*/true);
    if (!counts.defined()) counts = at::bincount(gids, {}, G);
    offsets = at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)});
    const int64_t BM = tile_bm(K);
    const at::Tensor tiles = (counts + (BM - 1)).div(BM, "floor");
    tile_offsets = at::cat({at::zeros({1}, counts.options()), tiles.cumsum(0)});
  } else {
    offsets = at::tensor({int64_t{0}, N}, x.options().dtype(at::kLong));
    tile_offsets = at::tensor({int64_t{0}, (N + tile_bm(K) - 1) / tile_bm(K)}, x.options().dtype(at::kLong));
  }
  at::Tensor s1 = at::empty({N}, x.options().dtype(at::kFloat)), s2 = at::empty_like(s1);
  AT_DISPATCH_V2(x.scalar_type(), "assign_modes_tiled", AT_WRAP([&] {
    if (K <= 16) {
      launch_tiled<scalar_t, 16>(x, order, c, cnorm, offsets, tile_offsets, G, K, D, index, s1, s2);
    } else if (K <= 32) {
      launch_tiled<scalar_t, 32>(x, order, c, cnorm, offsets, tile_offsets, G, K, D, index, s1, s2);
    } else {
      launch_tiled<scalar_t, 64>(x, order, c, cnorm, offsets, tile_offsets, G, K, D, index, s1, s2);
    }
    finalize_kernel<scalar_t, false><<<fin_blocks, kWarpsPerBlock * 32, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), gptr, c.const_data_ptr<float>(), cnorm.const_data_ptr<float>(),
        cmax.const_data_ptr<double>(), N, K, D, slack, nullptr, nullptr, s1.const_data_ptr<float>(),
        s2.const_data_ptr<float>(), index.data_ptr<int64_t>(), dist.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }), at::kFloat, at::kHalf, at::kBFloat16);
}

namespace {

std::tuple<at::Tensor, at::Tensor> assign_modes_cuda(const at::Tensor& points, const at::Tensor& centroids,
                                                     const std::optional<at::Tensor>& groups) {
  check_nearest_inputs("assign_modes", points, centroids, groups);
  at::Tensor index = at::empty({points.size(0)}, points.options().dtype(at::kLong));
  at::Tensor dist = at::empty({points.size(0)}, points.options().dtype(at::kFloat));
  nearest_centroids(points, centroids, groups, index, dist);
  return {index, dist};
}

}  // namespace
}  // namespace fastdistill::cuda

TORCH_LIBRARY_IMPL(fastdistill, CUDA, m) { m.impl("assign_modes", TORCH_FN(fastdistill::cuda::assign_modes_cuda)); }
