// Vectorised inner loops of the CPU nearest-centroid kernels, one implementation per instruction set.
//
// The AVX2 and AVX-512 versions live in their own translation units compiled under `#pragma GCC target`, so this
// header is deliberately plain C++ (no ATen, no inline functions, no templates): nothing defined here can be compiled
// with a wider instruction set than the machine running it.
//
// Dot products run with lanes along the centroids (see nearest_panels.h): the centroids of a group are packed once
// into d-major panels, and points are read in place as fp32 rows (other types are converted a block at a time).
#pragma once

#include <cstdint>

namespace fastdistill::cpu {

// Element type of the points (centroids are converted to fp32 before packing).
enum class ElemType : int { f32 = 0, f16 = 1, bf16 = 2 };

struct IsaKernels {
  const char* name;
  int64_t lanes;         // W: scores rows hold round_up(K, W / 2) floats
  int64_t block_points;  // points per call of block_dots
  // Packs the K fp32 rows of c (K x D, row-major) into out (round_up(K, W / 2) * D floats).
  void (*pack_centroids)(const float* c, int64_t K, int64_t D, float* out);
  // Converts n rows x[r] (D elements of `type`) to fp32 rows out + r * D (out holds n * D + W floats).
  void (*convert_rows)(const void* const* x, int64_t n, ElemType type, int64_t D, float* out);
  // scores[p * round_up(K, W / 2) + k] = dot(x[p], centroid k), fp32 accumulation, for n <= block_points fp32 rows x[p]
  // and K centroids, packed (cpack) and as fp32 rows c; `zero` is a row of D zeros, scores has room for block_points
  // rows.
  void (*block_dots)(const float* const* x, int64_t n, const float* zero, const float* cpack, const float* c,
                     int64_t K, int64_t D, float* scores);
  // In place scores[k] = cnorm[k] - 2 scores[k]; returns the first index of the smallest, the smallest and the
  // second smallest value (equal to the smallest on a tie).
  int64_t (*top2)(const float* cnorm, float* scores, int64_t K, float* s1, float* s2);
  // sum_d (x[d] - c[d])^2 over two fp32 rows of D floats: fp32 differences and squares, partial sums of a few terms
  // per lane in fp32, the rest in float64. Every term goes through at most 10 roundings of relative size 2^-24 and all
  // terms are positive, so the result is within a factor 1 +- 2^-20 of the exact value (for D < 2^28).
  double (*sqdist)(const float* x, const float* c, int64_t D);
  // The same with the differences taken in float64 (exact): only the float64 summation rounds.
  double (*sqdist_exact)(const float* x, const float* c, int64_t D);
  // acc[d] += x[d] in float64 for d < D.
  void (*accumulate)(const float* x, double* acc, int64_t D);
};

// Portable top2 (see IsaKernels::top2).
int64_t top2_scalar(const float* cnorm, float* scores, int64_t K, float* s1, float* s2);

// The IsaKernels of a translation unit that defines Isa, the functions of nearest_panels.h and nearest_sqdist.h (or
// its own sqdist and sqdist_exact) and accumulate; `top2` is its own or top2_scalar. Expanded outside the target-pragma
// region, so that the function filling it runs on any machine.
#define FASTDISTILL_ISA_KERNELS(name, top2) \
  IsaKernels{name, Isa::W, Isa::kAcc, pack_centroids, convert_rows, block_dots, top2, sqdist, sqdist_exact, accumulate}

// x86-64 GCC/Clang builds also have the AVX2 and AVX-512 kernels (the caller checks that the CPU supports them).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTDISTILL_X86_KERNELS
void avx512_kernels(IsaKernels* out);
void avx2_kernels(IsaKernels* out);
#endif
void generic_kernels(IsaKernels* out);

}  // namespace fastdistill::cpu
