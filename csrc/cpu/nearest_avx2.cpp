// AVX2 + FMA inner loops of the CPU nearest-centroid kernels (see nearest_isa.h and nearest_avx512.cpp for the rules).
#include "cpu/nearest_isa.h"

#ifdef FASTDISTILL_X86_KERNELS
#include <immintrin.h>

#include "cpu/nearest_x86_ops.h"

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

// Lane j of out[i] = src[j * ld + i] for i, j < 8; rows >= `rows` read as zeros.
void transpose8(const float* src, int64_t ld, int64_t rows, __m256* out) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = i < rows ? _mm256_loadu_ps(src + i * ld) : _mm256_setzero_ps();
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    out[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
    out[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
  }
}

FASTDISTILL_X86_OPS(F32x4, __m128, _mm, ps, float);
FASTDISTILL_X86_OPS(F32x8, __m256, _mm256, ps, float);
FASTDISTILL_X86_OPS(F64x4, __m256d, _mm256, pd, double);

struct Isa : F32x8 {
  static constexpr int W = 8;
  static constexpr int kV = 3;     // 12 accumulators + 3 centroid vectors + 1 broadcast point value = 16 registers
  static constexpr int kAcc = 12;  // and points per block: tiles of 4 points x 3 vectors (or 2 and a half), else 6
  static constexpr int kRows = 6;  // 6 point rows streamed at once at most
  using H = F32x4;
  using D = F64x4;
  static float hsum(V v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
  static V load_row(const void* x, ElemType type, int64_t d, int64_t n) { return load_any(x, type, d, n); }
  static void transpose(const float* src, int64_t ld, int64_t rows, V* t) { transpose8(src, ld, rows, t); }
  static H::V lower(V v) { return _mm256_castps256_ps128(v); }
  static double dsum(D::V a) {
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  }
  static D::V lo(V v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
  static D::V hi(V v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
};

#include "cpu/nearest_panels.h"
#include "cpu/nearest_sqdist.h"

void accumulate(const float* x, double* acc, int64_t D) {
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) {
    const __m256 xf = _mm256_loadu_ps(x + d);
    _mm256_storeu_pd(acc + d, _mm256_add_pd(_mm256_loadu_pd(acc + d), Isa::lo(xf)));
    _mm256_storeu_pd(acc + d + 4, _mm256_add_pd(_mm256_loadu_pd(acc + d + 4), Isa::hi(xf)));
  }
  for (; d < D; ++d) acc[d] += static_cast<double>(x[d]);
}

}  // namespace
}  // namespace fastdistill::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace fastdistill::cpu {
void avx2_kernels(IsaKernels* out) { *out = FASTDISTILL_ISA_KERNELS("avx2", top2_scalar); }
}  // namespace fastdistill::cpu

#endif
