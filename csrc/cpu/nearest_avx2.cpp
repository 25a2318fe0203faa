// AVX2 + FMA inner loops of the CPU nearest-centroid kernels (see nearest_isa.h and nearest_avx512.cpp for the rules).
#include "cpu/nearest_isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace fastdistill::cpu {
namespace {

// Elements [d, d + n) of row x (n <= 8) as fp32, zero-filled (AVX2 has no masked 16-bit loads: short rows go
// through a zeroed buffer).
__m256 load_any(const void* x, ElemType type, int64_t d, int64_t n) {
  if (type == ElemType::f32) {
    const float* p = static_cast<const float*>(x) + d;
    if (n == 8) return _mm256_loadu_ps(p);
    float tmp[8] = {};
    for (int64_t i = 0; i < n; ++i) tmp[i] = p[i];
    return _mm256_loadu_ps(tmp);
  }
  const uint16_t* p = static_cast<const uint16_t*>(x) + d;
  __m128i v;
  if (n == 8) {
    v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else {
    uint16_t tmp[8] = {};
    for (int64_t i = 0; i < n; ++i) tmp[i] = p[i];
    v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(tmp));
  }
  if (type == ElemType::f16) return _mm256_cvtph_ps(v);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

float hsum_ps(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

struct Isa {
  static constexpr int W = 8;
  static constexpr int kP = 3;  // 3 x 4 accumulators + 3 point vectors + 1 centroid vector = 16 registers
  static constexpr int kJ = 4;
  using V = __m256;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(V v) { return hsum_ps(v); }
  static V load_row(const void* x, ElemType type, int64_t d, int64_t n) { return load_any(x, type, d, n); }
  static void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T1); }
};

#include "cpu/nearest_panels.h"

void sq_acc(__m256 xf, __m256 cf, __m256d& a0, __m256d& a1) {
  const __m256d e0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xf)),
                                   _mm256_cvtps_pd(_mm256_castps256_ps128(cf)));
  const __m256d e1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xf, 1)),
                                   _mm256_cvtps_pd(_mm256_extractf128_ps(cf, 1)));
  a0 = _mm256_fmadd_pd(e0, e0, a0);
  a1 = _mm256_fmadd_pd(e1, e1, a1);
}

double sqdist(const float* x, int64_t xs, const float* c, int64_t cs, int64_t S) {
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  int64_t s = 0;
  for (; s + 2 <= S; s += 2) {
    sq_acc(_mm256_loadu_ps(x + s * xs), _mm256_loadu_ps(c + s * cs), a0, a1);
    sq_acc(_mm256_loadu_ps(x + (s + 1) * xs), _mm256_loadu_ps(c + (s + 1) * cs), a2, a3);
  }
  if (s < S) sq_acc(_mm256_loadu_ps(x + s * xs), _mm256_loadu_ps(c + s * cs), a0, a1);
  const __m256d a = _mm256_add_pd(_mm256_add_pd(a0, a2), _mm256_add_pd(a1, a3));
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

void accumulate(const float* x, int64_t xs, double* acc, int64_t D) {
  for (int64_t s = 0, d = 0; d < D; ++s, d += 8) {
    const float* p = x + s * xs;
    if (D - d >= 8) {
      const __m256 xf = _mm256_loadu_ps(p);
      _mm256_storeu_pd(acc + d, _mm256_add_pd(_mm256_loadu_pd(acc + d), _mm256_cvtps_pd(_mm256_castps256_ps128(xf))));
      _mm256_storeu_pd(acc + d + 4,
                       _mm256_add_pd(_mm256_loadu_pd(acc + d + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(xf, 1))));
    } else {
      for (int64_t i = 0; i < D - d; ++i) acc[d + i] += static_cast<double>(p[i]);
    }
  }
}

}  // namespace
}  // namespace fastdistill::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace fastdistill::cpu {
bool avx2_kernels(IsaKernels* out) {
  *out = IsaKernels{"avx2",         Isa::W,       Isa::kP, Isa::kJ, pack_points, pack_centroids, block_dots,
                    top2_scalar, sqdist, accumulate};
  return true;
}
}  // namespace fastdistill::cpu

#else  // not x86-64 GCC/Clang

namespace fastdistill::cpu {
bool avx2_kernels(IsaKernels*) { return false; }
}  // namespace fastdistill::cpu

#endif
