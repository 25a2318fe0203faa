// Squared distances between two fp32 rows, written once over a SIMD instruction-set policy `Isa`.
//
// Included by nearest_{avx512,avx2}.cpp right after nearest_panels.h, under the same rules (inside their anonymous
// namespace and target-pragma region; it includes nothing). Besides what nearest_panels.h needs, `Isa` provides: sub
// and add of two V; D, the operations of float64 vectors of W / 2 lanes (a type D::V with D::zero, sub, add and fma);
// dsum(D::V) -> double; and lo(V) / hi(V) -> D::V, the lower / upper W / 2 lanes of a V widened to float64.

// (x - c)^2 of W elements, the difference taken in float64 (exact), added to two float64 accumulators.
void sq_acc(Isa::V xf, Isa::V cf, Isa::D::V& a0, Isa::D::V& a1) {
  const Isa::D::V e0 = Isa::D::sub(Isa::lo(xf), Isa::lo(cf)), e1 = Isa::D::sub(Isa::hi(xf), Isa::hi(cf));
  a0 = Isa::D::fma(e0, e0, a0);
  a1 = Isa::D::fma(e1, e1, a1);
}

// Two accumulator pairs (2 W elements per iteration) hide the FMA latency; the tail is loaded zero-filled.
double sqdist_exact(const float* x, const float* c, int64_t D) {
  Isa::D::V a0 = Isa::D::zero(), a1 = a0, a2 = a0, a3 = a0;
  int64_t d = 0;
  for (; d + 2 * Isa::W <= D; d += 2 * Isa::W) {
    sq_acc(Isa::load(x + d), Isa::load(c + d), a0, a1);
    sq_acc(Isa::load(x + d + Isa::W), Isa::load(c + d + Isa::W), a2, a3);
  }
  for (; d < D; d += Isa::W) {
    const int64_t n = less(Isa::W, D - d);
    sq_acc(Isa::load_row(x, ElemType::f32, d, n), Isa::load_row(c, ElemType::f32, d, n), a0, a1);
  }
  return Isa::dsum(Isa::D::add(Isa::D::add(a0, a2), Isa::D::add(a1, a3)));
}

// fp32 differences and squares, summed per lane in fp32 over blocks of 8 W elements (at most 5 roundings per lane:
// 4 fused multiply-adds into each of two accumulators, then their sum), the block sums in float64.
double sqdist(const float* x, const float* c, int64_t D) {
  constexpr int64_t kBlock = 8 * Isa::W;
  Isa::D::V a0 = Isa::D::zero(), a1 = a0;
  for (int64_t d0 = 0; d0 < D; d0 += kBlock) {
    const int64_t end = D - d0 < kBlock ? D : d0 + kBlock;
    Isa::V s = Isa::zero(), t = s;
    int64_t d = d0;
    for (; d + 2 * Isa::W <= end; d += 2 * Isa::W) {
      const Isa::V e = Isa::sub(Isa::load(x + d), Isa::load(c + d));
      const Isa::V f = Isa::sub(Isa::load(x + d + Isa::W), Isa::load(c + d + Isa::W));
      s = Isa::fma(e, e, s);
      t = Isa::fma(f, f, t);
    }
    for (; d < end; d += Isa::W) {
      const int64_t n = less(Isa::W, end - d);
      const Isa::V e = Isa::sub(Isa::load_row(x, ElemType::f32, d, n), Isa::load_row(c, ElemType::f32, d, n));
      s = Isa::fma(e, e, s);
    }
    s = Isa::add(s, t);
    a0 = Isa::D::add(a0, Isa::lo(s));
    a1 = Isa::D::add(a1, Isa::hi(s));
  }
  return Isa::dsum(Isa::D::add(a0, a1));
}
