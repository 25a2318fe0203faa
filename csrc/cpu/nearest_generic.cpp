// Portable inner loops of the CPU nearest-centroid kernels (any architecture; the compiler vectorises the lane loops).
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <limits>

#include "cpu/nearest_isa.h"

namespace fastdistill::cpu {
namespace {

float to_float(const void* x, ElemType type, int64_t i) {
  switch (type) {
    case ElemType::f16: return c10::detail::fp16_ieee_to_fp32_value(static_cast<const uint16_t*>(x)[i]);
    case ElemType::bf16: return c10::detail::f32_from_bits(static_cast<const uint16_t*>(x)[i]);
    default: return static_cast<const float*>(x)[i];
  }
}

struct Lanes {
  float v[8];
};

struct Isa {
  static constexpr int W = 8;
  static constexpr int kP = 4;
  static constexpr int kJ = 4;
  using V = Lanes;
  static V zero() { return V{}; }
  static V load(const float* p) {
    V r;
    for (int l = 0; l < W; ++l) r.v[l] = p[l];
    return r;
  }
  static void store(float* p, const V& a) {
    for (int l = 0; l < W; ++l) p[l] = a.v[l];
  }
  static V fma(const V& a, const V& b, V c) {
    for (int l = 0; l < W; ++l) c.v[l] += a.v[l] * b.v[l];
    return c;
  }
  static float hsum(const V& a) {
    float s = 0.f;
    for (int l = 0; l < W; ++l) s += a.v[l];
    return s;
  }
  static V load_row(const void* x, ElemType type, int64_t d, int64_t n) {
    V r{};
    for (int64_t l = 0; l < n; ++l) r.v[l] = to_float(x, type, d + l);
    return r;
  }
  static void prefetch(const char* p) { __builtin_prefetch(p, 0, 2); }
};

#include "cpu/nearest_panels.h"

double sqdist(const float* x, int64_t xs, const float* c, int64_t cs, int64_t S) {
  double acc[Isa::W] = {};
  for (int64_t s = 0; s < S; ++s)
    for (int l = 0; l < Isa::W; ++l) {
      const double e = static_cast<double>(x[s * xs + l]) - static_cast<double>(c[s * cs + l]);
      acc[l] += e * e;
    }
  double sum = 0.0;
  for (double a : acc) sum += a;
  return sum;
}

void accumulate(const float* x, int64_t xs, double* acc, int64_t D) {
  for (int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(x[(d / Isa::W) * xs + d % Isa::W]);
}

}  // namespace

int64_t top2_scalar(const float* cnorm, float* scores, int64_t K, float* s1, float* s2) {
  float low = std::numeric_limits<float>::infinity(), second = low;
  int64_t best = 0;
  for (int64_t k = 0; k < K; ++k) {
    const float v = cnorm[k] - 2.f * scores[k];
    scores[k] = v;
    if (v < low) {
      second = low;
      low = v;
      best = k;
    } else if (v < second) {
      second = v;
    }
  }
  *s1 = low;
  *s2 = second;
  return best;
}

const float* panel_row(const float* pack, int64_t n, int64_t cap, int64_t r, int64_t D, int64_t W, int64_t* stride) {
  const int64_t count = (n + cap - 1) / cap, base = n / count, extra = n % count, big = extra * (base + 1);
  const int64_t rows = r < big ? base + 1 : base;
  const int64_t r0 = r < big ? r / rows * rows : big + (r - big) / rows * rows;
  *stride = rows * W;
  return pack + r0 * ((D + W - 1) / W * W) + (r - r0) * W;
}

void generic_kernels(IsaKernels* out) {
  *out = IsaKernels{"generic",      Isa::W,       Isa::kP, Isa::kJ, pack_points, pack_centroids, block_dots,
                    top2_scalar, sqdist, accumulate};
}

}  // namespace fastdistill::cpu
