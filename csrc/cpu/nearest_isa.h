// Vectorised inner loops of the CPU nearest-centroid kernels, one implementation per instruction set.
//
// The AVX2 and AVX-512 versions live in their own translation units compiled under `#pragma GCC target`, so this
// header is deliberately plain C++ (no ATen, no inline functions, no templates): nothing defined here can be compiled
// with a wider instruction set than the machine running it.
//
// Dot products run on packed panels: D is zero-padded to a multiple of `lanes`, and each register tile of points (or
// centroids) is stored step-major ([D / lanes][tile rows][lanes]) so that a micro-kernel reads two contiguous streams.
// Rows of 4 KiB (D = 1024 fp32) would otherwise alias in the L1 cache.
#pragma once

#include <cstdint>

namespace fastdistill::cpu {

// Element type of the points (centroids are converted to fp32 before packing).
enum class ElemType : int { f32 = 0, f16 = 1, bf16 = 2 };

// Points handled together by one call of `block_dots`.
constexpr int64_t kBlockPoints = 16;

struct IsaKernels {
  const char* name;
  int64_t lanes;           // W: packed rows hold round_up(D, W) floats
  int64_t point_tile;      // points per register tile (tile sizes are balanced, see panel_row)
  int64_t centroid_tile;   // centroids per register tile
  // Packs n <= kBlockPoints rows x[p] (D elements of `type`) into out (n * round_up(D, W) floats).
  void (*pack_points)(const void* const* x, int64_t n, ElemType type, int64_t D, float* out);
  // Packs K fp32 rows of c (K x D, row-major) into out (K * round_up(D, W) floats).
  void (*pack_centroids)(const float* c, int64_t K, int64_t D, float* out);
  // scores[p * K + k] = dot(point p, centroid k), fp32 accumulation, for n points and K packed centroids. Points are
  // packed (xpack) or, if xpack is null, fp32 rows xrows[p] with D a multiple of W. `scratch` holds n * K * W floats.
  // Meanwhile the n_ahead rows `ahead` (row_bytes each: the next block) are prefetched.
  void (*block_dots)(const float* xpack, const float* const* xrows, int64_t n, const float* cpack, int64_t K,
                     int64_t D, float* scratch, float* scores, const void* const* ahead, int64_t n_ahead,
                     int64_t row_bytes);
  // In place scores[k] = cnorm[k] - 2 scores[k]; returns the first index of the smallest, the smallest and the
  // second smallest value (equal to the smallest on a tie).
  int64_t (*top2)(const float* cnorm, float* scores, int64_t K, float* s1, float* s2);
  // sum_d (x[d] - c[d])^2 accumulated in float64, for one packed point row and one packed centroid row (located with
  // panel_row: S = round_up(D, W) / W steps, consecutive steps `stride` floats apart).
  double (*sqdist)(const float* x, int64_t x_stride, const float* c, int64_t c_stride, int64_t S);
  // acc[d] += x[d] in float64 for d < D, x a packed point row.
  void (*accumulate)(const float* x, int64_t x_stride, double* acc, int64_t D);
};

// Portable top2 (see IsaKernels::top2).
int64_t top2_scalar(const float* cnorm, float* scores, int64_t K, float* s1, float* s2);

// Where row r of n rows packed in balanced tiles of at most `cap` rows starts, and its step stride.
const float* panel_row(const float* pack, int64_t n, int64_t cap, int64_t r, int64_t D, int64_t W, int64_t* stride);

// Each returns false when this build has no such implementation (e.g. not x86-64).
bool avx512_kernels(IsaKernels* out);
bool avx2_kernels(IsaKernels* out);
void generic_kernels(IsaKernels* out);

}  // namespace fastdistill::cpu
