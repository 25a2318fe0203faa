// AVX-512 inner loops of the CPU nearest-centroid kernels (see nearest_isa.h).
//
// Everything after the target pragma is in an anonymous namespace and uses only intrinsics and our own templates: no
// standard-library or ATen template is instantiated with AVX-512 enabled, so no AVX-512 code can leak into machines
// without it (the entry point at the bottom is compiled without the pragma).
#include "cpu/nearest_isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

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

struct Isa {
  static constexpr int W = 16;
  static constexpr int kP = 4;  // 4 x 6 accumulators + 4 point vectors + 1 centroid vector <= 32 registers
  static constexpr int kJ = 6;
  using V = __m512;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  static V load_row(const void* x, ElemType type, int64_t d, int64_t n) { return load_any(x, type, d, n); }
  static void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T1); }
};

#include "cpu/nearest_panels.h"

__m512d lo_pd(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
__m512d hi_pd(__m512 v) { return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))); }

// (x - c)^2 of 16 elements, added to two float64 accumulators.
void sq_acc(__m512 xf, __m512 cf, __m512d& a0, __m512d& a1) {
  const __m512d e0 = _mm512_sub_pd(lo_pd(xf), lo_pd(cf)), e1 = _mm512_sub_pd(hi_pd(xf), hi_pd(cf));
  a0 = _mm512_fmadd_pd(e0, e0, a0);
  a1 = _mm512_fmadd_pd(e1, e1, a1);
}

// Two accumulator pairs (32 elements per iteration) hide the FMA latency; padding lanes are zero in both panels.
double sqdist(const float* x, int64_t xs, const float* c, int64_t cs, int64_t S) {
  __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  int64_t s = 0;
  for (; s + 2 <= S; s += 2) {
    sq_acc(_mm512_loadu_ps(x + s * xs), _mm512_loadu_ps(c + s * cs), a0, a1);
    sq_acc(_mm512_loadu_ps(x + (s + 1) * xs), _mm512_loadu_ps(c + (s + 1) * cs), a2, a3);
  }
  if (s < S) sq_acc(_mm512_loadu_ps(x + s * xs), _mm512_loadu_ps(c + s * cs), a0, a1);
  return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a2), _mm512_add_pd(a1, a3)));
}

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

void accumulate(const float* x, int64_t xs, double* acc, int64_t D) {
  for (int64_t s = 0, d = 0; d < D; ++s, d += 16) {
    const __mmask16 m = first_n(D - d < 16 ? D - d : 16);
    const __mmask8 m0 = static_cast<__mmask8>(m & 0xff), m1 = static_cast<__mmask8>(m >> 8);
    const __m512 xf = _mm512_loadu_ps(x + s * xs);
    _mm512_mask_storeu_pd(acc + d, m0, _mm512_add_pd(_mm512_maskz_loadu_pd(m0, acc + d), lo_pd(xf)));
    _mm512_mask_storeu_pd(acc + d + 8, m1, _mm512_add_pd(_mm512_maskz_loadu_pd(m1, acc + d + 8), hi_pd(xf)));
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
bool avx512_kernels(IsaKernels* out) {
  *out = IsaKernels{"avx512",       Isa::W, Isa::kP, Isa::kJ, pack_points, pack_centroids, block_dots, top2, sqdist,
                    accumulate};
  return true;
}
}  // namespace fastdistill::cpu

#else  // not x86-64 GCC/Clang

namespace fastdistill::cpu {
bool avx512_kernels(IsaKernels*) { return false; }
}  // namespace fastdistill::cpu

#endif
