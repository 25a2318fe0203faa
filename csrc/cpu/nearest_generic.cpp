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

template <int N>
struct Lanes {
  float v[N];
};

template <int N>
Lanes<N> lanes_load(const float* p) {
  Lanes<N> r;
  for (int l = 0; l < N; ++l) r.v[l] = p[l];
  return r;
}

template <int N>
void lanes_store(float* p, const Lanes<N>& a) {
  for (int l = 0; l < N; ++l) p[l] = a.v[l];
}

template <int N>
Lanes<N> lanes_broadcast(float x) {
  Lanes<N> r;
  for (int l = 0; l < N; ++l) r.v[l] = x;
  return r;
}

template <int N>
Lanes<N> lanes_fma(const Lanes<N>& a, const Lanes<N>& b, Lanes<N> c) {
  for (int l = 0; l < N; ++l) c.v[l] += a.v[l] * b.v[l];
  return c;
}

// The vector operations of Isa (N = W) and Isa::H (N = W / 2), lane by lane.
template <int N>
struct LaneOps {
  using V = Lanes<N>;
  static V zero() { return V{}; }
  static V load(const float* p) { return lanes_load<N>(p); }
  static void store(float* p, const V& a) { lanes_store(p, a); }
  static V broadcast(float x) { return lanes_broadcast<N>(x); }
  static V fma(const V& a, const V& b, const V& c) { return lanes_fma(a, b, c); }
};

struct Isa : LaneOps<8> {
  static constexpr int W = 8;
  static constexpr int kV = 2;
  static constexpr int kAcc = 8;  // and points per block: tiles of 4 points
  static constexpr int kRows = 4;  // 4 point rows streamed at once at most
  using H = LaneOps<4>;
  static float hsum(const V& a) {
    float s = 0.f;
    for (float v : a.v) s += v;
    return s;
  }
  static void transpose(const float* src, int64_t ld, int64_t rows, V* t) {
    for (int64_t i = 0; i < W; ++i)
      for (int64_t j = 0; j < W; ++j) t[i].v[j] = j < rows ? src[j * ld + i] : 0.f;
  }
  static H::V lower(const V& a) { return lanes_load<4>(a.v); }
  static V load_row(const void* x, ElemType type, int64_t d, int64_t n) {
    V r{};
    for (int64_t l = 0; l < n; ++l) r.v[l] = to_float(x, type, d + l);
    return r;
  }
};

#include "cpu/nearest_panels.h"

double sqdist_exact(const float* x, const float* c, int64_t D) {
  double acc[Isa::W] = {};
  for (int64_t d = 0; d < D; ++d) {
    const double e = static_cast<double>(x[d]) - static_cast<double>(c[d]);
    acc[d % Isa::W] += e * e;
  }
  double sum = 0.0;
  for (double a : acc) sum += a;
  return sum;
}

// fp32 differences and squares, summed in fp32 over runs of 4 elements per lane (at most 9 roundings per term with
// the difference and the square), the run sums in float64.
double sqdist(const float* x, const float* c, int64_t D) {
  double acc[Isa::W] = {};
  for (int64_t d0 = 0; d0 < D; d0 += 4 * Isa::W) {
    float run[Isa::W] = {};
    for (int64_t d = d0; d < D && d < d0 + 4 * Isa::W; ++d) {
      const float e = x[d] - c[d];
      run[d % Isa::W] += e * e;
    }
    for (int l = 0; l < Isa::W; ++l) acc[l] += run[l];
  }
  double sum = 0.0;
  for (double a : acc) sum += a;
  return sum;
}

void accumulate(const float* x, double* acc, int64_t D) {
  for (int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(x[d]);
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

void generic_kernels(IsaKernels* out) { *out = FASTDISTILL_ISA_KERNELS("generic", top2_scalar); }

}  // namespace fastdistill::cpu
