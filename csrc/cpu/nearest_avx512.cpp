// AVX-512 inner loops of the CPU nearest-centroid kernels (see nearest_isa.h).
//
// Everything after the target pragma is in an anonymous namespace and uses only intrinsics and our own templates: no
// standard-library or ATen template is instantiated with AVX-512 enabled, so no AVX-512 code can leak into machines
// without it (the entry point at the bottom is compiled without the pragma).
#include "cpu/nearest_isa.h"

#ifdef FASTDISTILL_X86_KERNELS
#include <immintrin.h>

#include "cpu/nearest_x86_ops.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // false positives inside GCC's own avx512fintrin.h
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace fastdistill::cpu {
namespace {

__mmask16 first_n(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

__m512 widen_bf16(__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); }

// Elements [d, d + n) of row x (n <= 16) as fp32, zero-filled.
__m512 load_any(const void* x, ElemType type, int64_t d, int64_t n) {
  const __mmask16 m = first_n(n);
  switch (type) {
    case ElemType::f16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(x) + d));
    case ElemType::bf16: return widen_bf16(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(x) + d));
    default: return _mm512_maskz_loadu_ps(m, static_cast<const float*>(x) + d);
  }
}

// Lane j of out[i] = src[j * ld + i] for i, j < 16; rows >= `rows` read as zeros.
void transpose16(const float* src, int64_t ld, int64_t rows, __m512* out) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(src + i * ld) : _mm512_setzero_ps();
  for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // 4 x 4 blocks within each 128-bit lane
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 8; ++i) {  // 128-bit lanes across groups of 4 rows
    const int a = i / 4 * 8 + i % 4;
    t[a] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0x88);
    t[a + 4] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0xDD);
  }
  for (int i = 0; i < 4; ++i) {  // and across groups of 8 rows
    out[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    out[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    out[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    out[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
  }
}

FASTDISTILL_X86_OPS(F32x8, __m256, _mm256, ps, float);
FASTDISTILL_X86_OPS(F32x16, __m512, _mm512, ps, float);
FASTDISTILL_X86_OPS(F64x8, __m512d, _mm512, pd, double);

struct Isa : F32x16 {
  static constexpr int W = 16;
  static constexpr int kV = 4;     // 24 accumulators + 4 centroid vectors + 1 broadcast point value <= 32 registers
  static constexpr int kAcc = 24;  // and points per block: tiles of 6 points x 4 vectors (or 3 and a half), else 8
  static constexpr int kRows = 8;  // 8 point rows streamed at once at most
  using H = F32x8;
  using D = F64x8;
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  static V load_row(const void* x, ElemType type, int64_t d, int64_t n) { return load_any(x, type, d, n); }
  static void transpose(const float* src, int64_t ld, int64_t rows, V* t) { transpose16(src, ld, rows, t); }
  static H::V lower(V v) { return _mm512_castps512_ps256(v); }
  static double dsum(D::V a) { return _mm512_reduce_add_pd(a); }
  static D::V lo(V v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
  static D::V hi(V v) { return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))); }
};

#include "cpu/nearest_panels.h"
#include "cpu/nearest_sqdist.h"

// min(v, m) keeps m where v is NaN, so NaN scores are never the best (as in the scalar version).
int64_t top2(const float* cnorm, float* scores, int64_t K, float* s1, float* s2) {
  const __m512 two = _mm512_set1_ps(2.f), inf = _mm512_set1_ps(__builtin_inff());
  __m512 low = inf;
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m = first_n(K - k < 16 ? K - k : 16);
    const __m512 v = _mm512_fnmadd_ps(two, _mm512_maskz_loadu_ps(m, scores + k), _mm512_maskz_loadu_ps(m, cnorm + k));
    _mm512_mask_storeu_ps(scores + k, m, v);
    low = _mm512_mask_min_ps(low, m, v, low);
  }
  const float best_value = _mm512_reduce_min_ps(low);
  int64_t best = 0;
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m = first_n(K - k < 16 ? K - k : 16);
    const __mmask16 hit =
        _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, scores + k), _mm512_set1_ps(best_value), _CMP_EQ_OQ);
    if (hit != 0) {
      best = k + __builtin_ctz(hit);
      break;
    }
  }
  __m512 second = inf;
  for (int64_t k = 0; k < K; k += 16) {
    __mmask16 m = first_n(K - k < 16 ? K - k : 16);
    if (best >= k && best < k + 16) m = static_cast<__mmask16>(m & ~(1u << (best - k)));
    second = _mm512_mask_min_ps(second, m, _mm512_maskz_loadu_ps(m, scores + k), second);
  }
  *s1 = best_value;
  *s2 = _mm512_reduce_min_ps(second);
  return best;
}

void accumulate(const float* x, double* acc, int64_t D) {
  for (int64_t d = 0; d < D; d += 16) {
    const __mmask16 m = first_n(D - d < 16 ? D - d : 16);
    const __mmask8 m0 = static_cast<__mmask8>(m & 0xff), m1 = static_cast<__mmask8>(m >> 8);
    const __m512 xf = _mm512_maskz_loadu_ps(m, x + d);
    _mm512_mask_storeu_pd(acc + d, m0, _mm512_add_pd(_mm512_maskz_loadu_pd(m0, acc + d), Isa::lo(xf)));
    _mm512_mask_storeu_pd(acc + d + 8, m1, _mm512_add_pd(_mm512_maskz_loadu_pd(m1, acc + d + 8), Isa::hi(xf)));
  }
}

}  // namespace
}  // namespace fastdistill::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

namespace fastdistill::cpu {
void avx512_kernels(IsaKernels* out) { *out = FASTDISTILL_ISA_KERNELS("avx512", top2); }
}  // namespace fastdistill::cpu

#endif
