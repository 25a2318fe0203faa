// Panel packing and register-tiled dot products, written once over an instruction-set policy `Isa`.
//
// Included by nearest_{avx512,avx2,generic}.cpp *inside* an anonymous namespace (and, for the SIMD ones, inside their
// target-pragma region) after `Isa` is defined, so every instantiation is private to that translation unit. It
// includes nothing on purpose. `Isa` provides: W (fp32 lanes), kP / kJ (points / centroids per register tile), a
// vector type V with zero, load, store, fma, hsum, load_row(x, type, d, n) -> V (n <= W elements of row x from d,
// converted to fp32, zero-filled) and prefetch(address) (into L2).

struct Tiles {  // balanced split of n rows into `count` tiles whose sizes differ by at most one
  int64_t count, base, extra;
  int64_t size(int64_t t) const { return base + (t < extra ? 1 : 0); }
};

Tiles split(int64_t n, int64_t cap) {
  const int64_t count = (n + cap - 1) / cap;
  return {count, n / count, n % count};
}

int64_t steps(int64_t D) { return (D + Isa::W - 1) / Isa::W; }

// Row r of the tile starting at `out` with `rows` rows: out[(s * rows + r) * W + l] = x[r][s * W + l].
void pack_rows(const void* const* x, int64_t n, ElemType type, int64_t D, int64_t cap, float* out) {
  const int64_t S = steps(D);
  const Tiles tiles = split(n, cap);
  for (int64_t t = 0, r0 = 0; t < tiles.count; ++t) {
    const int64_t rows = tiles.size(t);
    for (int64_t r = 0; r < rows; ++r) {  // one row at a time: a sequential stream for the hardware prefetcher
      for (int64_t s = 0; s < S; ++s) {
        const int64_t d = s * Isa::W, w = D - d < Isa::W ? D - d : Isa::W;
        Isa::store(out + (s * rows + r) * Isa::W, Isa::load_row(x[r0 + r], type, d, w));
      }
    }
    out += S * rows * Isa::W;
    r0 += rows;
  }
}

void pack_points(const void* const* x, int64_t n, ElemType type, int64_t D, float* out) {
  pack_rows(x, n, type, D, Isa::kP, out);
}

void pack_centroids(const float* c, int64_t K, int64_t D, float* out) {
  const Tiles tiles = split(K, Isa::kJ);
  const int64_t S = steps(D);
  for (int64_t t = 0, k0 = 0; t < tiles.count; ++t) {
    const int64_t rows = tiles.size(t);
    const void* ptr[Isa::kJ];
    for (int64_t r = 0; r < rows; ++r) ptr[r] = c + (k0 + r) * D;
    pack_rows(ptr, rows, ElemType::f32, D, rows, out + k0 * S * Isa::W);
    k0 += rows;
  }
}

// Steps per pass: long rows are cut into chunks of 1024 fp32 values so that a block's point panels and the group's
// centroid panels stay in L2; partial accumulators go to `acc` between chunks.
constexpr int64_t kChunkSteps = 1024 / Isa::W;

// One P x J register tile over S steps: scores[p * ld + j] += dot(point p, centroid j) restricted to the chunk. Step s
// of point p is at x[p] + s * x_stride (a packed tile, or a plain fp32 row); centroids are packed. `first` starts from
// zero instead of `acc`; `last` reduces into scores instead of saving to `acc` (P * J vectors).
template <int P, int J>
void micro(const float* const* x, int64_t x_stride, const float* cp, int64_t S, float* acc, bool first, bool last,
           float* scores, int64_t ld) {
  typename Isa::V a[P][J];
  for (int p = 0; p < P; ++p)
    for (int j = 0; j < J; ++j) a[p][j] = first ? Isa::zero() : Isa::load(acc + (p * J + j) * Isa::W);
  for (int64_t s = 0; s < S; ++s) {
    typename Isa::V xr[P];
    for (int p = 0; p < P; ++p) xr[p] = Isa::load(x[p] + s * x_stride);
    for (int j = 0; j < J; ++j) {
      const typename Isa::V cr = Isa::load(cp + (s * J + j) * Isa::W);
      for (int p = 0; p < P; ++p) a[p][j] = Isa::fma(xr[p], cr, a[p][j]);
    }
  }
  for (int p = 0; p < P; ++p)
    for (int j = 0; j < J; ++j) {
      if (last) {
        scores[p * ld + j] = Isa::hsum(a[p][j]);
      } else {
        Isa::store(acc + (p * J + j) * Isa::W, a[p][j]);
      }
    }
}

using MicroFn = void (*)(const float* const*, int64_t, const float*, int64_t, float*, bool, bool, float*, int64_t);

template <int P, int J>
MicroFn pick_j(int64_t want) {
  if constexpr (J == 1) {
    return micro<P, 1>;
  } else {
    return want == J ? micro<P, J> : pick_j<P, J - 1>(want);
  }
}

template <int P>
MicroFn pick(int64_t p, int64_t j) {
  if constexpr (P == 1) {
    return pick_j<1, Isa::kJ>(j);
  } else {
    return p == P ? pick_j<P, Isa::kJ>(j) : pick<P - 1>(p, j);
  }
}

// Chunks of D outside, then centroid tiles, then point tiles: a centroid panel chunk is reused by every point tile of
// the block. Points come packed (xpack) or, when xpack is null, as fp32 rows with D a multiple of W (xrows). `acc`
// holds n * K * W floats. The next block's rows (`ahead`, 64-byte lines) are prefetched into L2 a few lines per
// micro-kernel call, so that reading them from memory overlaps this block's arithmetic.
void block_dots(const float* xpack, const float* const* xrows, int64_t n, const float* cpack, int64_t K, int64_t D,
                float* acc, float* scores, const void* const* ahead, int64_t n_ahead, int64_t row_bytes) {
  const int64_t S = steps(D), Dp = S * Isa::W;
  const Tiles pt = split(n, Isa::kP), ct = split(K, Isa::kJ);
  const int64_t lines = (row_bytes + 63) / 64, calls = ((S + kChunkSteps - 1) / kChunkSteps) * ct.count * pt.count;
  const int64_t per_call = (n_ahead * lines + calls - 1) / calls;
  int64_t next = 0;  // lines prefetched so far, row-major over `ahead`
  for (int64_t s0 = 0; s0 < S; s0 += kChunkSteps) {
    const int64_t len = S - s0 < kChunkSteps ? S - s0 : kChunkSteps;
    const bool first = s0 == 0, last = s0 + len == S;
    for (int64_t c = 0, k0 = 0; c < ct.count; ++c) {
      const int64_t J = ct.size(c);
      for (int64_t t = 0, r0 = 0; t < pt.count; ++t) {
        const int64_t P = pt.size(t);
        for (int64_t end = next + per_call; next < end && next < n_ahead * lines; ++next)
          Isa::prefetch(static_cast<const char*>(ahead[next / lines]) + (next % lines) * 64);
        const float* x[Isa::kP];
        const int64_t stride = xpack != nullptr ? P * Isa::W : Isa::W;
        for (int64_t p = 0; p < P; ++p)
          x[p] = (xpack != nullptr ? xpack + r0 * Dp + p * Isa::W : xrows[r0 + p]) + s0 * stride;
        pick<Isa::kP>(P, J)(x, stride, cpack + k0 * Dp + s0 * J * Isa::W, len, acc + (r0 * K + k0 * P) * Isa::W,
                            first, last, scores + r0 * K + k0, K);
        r0 += P;
      }
      k0 += J;
    }
  }
}
