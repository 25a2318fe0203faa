// Centroid panels and register-tiled dot products, written once over an instruction-set policy `Isa`.
//
// Included by nearest_{avx512,avx2,generic}.cpp *inside* an anonymous namespace (and, for the SIMD ones, inside their
// target-pragma region) after `Isa` is defined, so every instantiation is private to that translation unit. It
// includes nothing on purpose. `Isa` provides: W (fp32 lanes); kV (most centroid vectors per register tile); kAcc
// (accumulator registers: a tile of V vectors, or of V - 1 and a half vector, takes min(kAcc / V, kRows) points, and
// every such count divides kAcc, the points per block); a vector type V with zero, load, store, broadcast(float), fma,
// hsum -> float and load_row(x, type, d, n) -> V (n <= W elements of row x from d, converted to fp32, zero-filled); H,
// the same for half-width vectors (W / 2 lanes): a type H::V with H::zero, load, store, broadcast and fma; lower(V)
// -> H::V, its first W / 2 lanes; and transpose(src, ld, rows, t): lane j of t[i] = src[j * ld + i] for i, j < W, zero
// for j >= rows.
//
// Lanes run along the centroids: one step of the micro-kernel loads the centroid values of a tile at one coordinate d
// and broadcasts coordinate d of each point, so points are read in place (any D, no packing) and every load feeds
// several multiply-adds. The centroids of a group are cut into tiles of kV * W (only the last one shorter,
// zero-padded to a multiple of W / 2: a half vector costs half as much as a full one where the hardware splits wide
// vectors, as on AMD Zen 4), each stored d-major: tile columns [k0, k0 + width) at pack + k0 * D, element (d, j) at
// d * width + j. The last K mod (W / 2) centroids, when few (tail_centroids), are instead done as inner products
// along D (ip_micro). Scores rows hold K' = round_up(K, W / 2) values: the K real ones first, padding after.

int64_t less(int64_t a, int64_t b) { return a < b ? a : b; }

// Points per register tile of `units` vectors (a half vector counts as one): as many as the accumulators allow, but at
// most kRows, the point rows a tile streams through at once (more defeat the hardware prefetcher).
constexpr int tile_points(int units) { return Isa::kAcc / units < Isa::kRows ? Isa::kAcc / units : Isa::kRows; }

constexpr int64_t kHalf = Isa::W / 2;

int64_t padded(int64_t K) { return (K + kHalf - 1) / kHalf * kHalf; }

// Centroids beyond the last multiple of W / 2, when at most W / 4 of them and at least 2 W others: inner products
// along D (ip_micro) then cost less than a half vector of mostly padding (they read the point rows again, which only
// pays off next to enough lane work). The first K - tail_centroids(K) go to the lane tiles.
int64_t tail_centroids(int64_t K) { return K % kHalf <= kHalf / 2 && K - K % kHalf >= 2 * Isa::W ? K % kHalf : 0; }

void pack_centroids(const float* c, int64_t K, int64_t D, float* out) {
  K -= tail_centroids(K);
  const int64_t Kp = padded(K), span = Isa::kV * Isa::W, Dv = D / Isa::W * Isa::W;
  for (int64_t k0 = 0; k0 < Kp; k0 += span) {
    const int64_t width = less(span, Kp - k0);
    float* tile = out + k0 * D;
    for (int64_t j0 = 0; j0 < width; j0 += Isa::W) {  // W x W blocks in registers; the last D % W coordinates by hand
      const int64_t cols = less(Isa::W, width - j0), rows = less(cols, K - k0 - j0);
      const float* src = c + (k0 + j0) * D;
      for (int64_t d0 = 0; d0 < Dv; d0 += Isa::W) {
        typename Isa::V t[Isa::W];
        Isa::transpose(src + d0, D, rows, t);
        for (int i = 0; i < Isa::W; ++i) {
          float* dst = tile + (d0 + i) * width + j0;
          if (cols == Isa::W) {
            Isa::store(dst, t[i]);
          } else {
            Isa::H::store(dst, Isa::lower(t[i]));
          }
        }
      }
      for (int64_t d = Dv; d < D; ++d)
        for (int64_t j = 0; j < cols; ++j) tile[d * width + j0 + j] = j < rows ? src[j * D + d] : 0.f;
    }
  }
}

// n rows of any element type as fp32 rows of D floats at out (W floats of slack after the last row).
void convert_rows(const void* const* x, int64_t n, ElemType type, int64_t D, float* out) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t d = 0; d < D; d += Isa::W)
      Isa::store(out + r * D + d, Isa::load_row(x[r], type, d, less(Isa::W, D - d)));
}

// Coordinates per pass: a tile's panel chunk (at most 1024 x kV x W floats) stays in L2 across the point tiles.
constexpr int64_t kChunk = 1024;

// scores[p * ld + j] (+)= dot(x[p][d0 : d0 + len], centroid j of the tile) for tile_points(V + T) points,
// j < V * W + T * W / 2.
template <int V, int T>
void micro(const float* const* x, int64_t d0, int64_t len, const float* tile, int64_t width, float* scores, int64_t ld,
           bool first) {
  constexpr int P = tile_points(V + T), VA = V > 0 ? V : 1;
  typename Isa::V a[P][VA];
  typename Isa::H::V h[P];
  for (int p = 0; p < P; ++p) {
    for (int v = 0; v < V; ++v) a[p][v] = first ? Isa::zero() : Isa::load(scores + p * ld + v * Isa::W);
    if (T) h[p] = first ? Isa::H::zero() : Isa::H::load(scores + p * ld + V * Isa::W);
  }
  const float* c = tile + d0 * width;
  for (int64_t d = d0; d < d0 + len; ++d, c += width) {
    typename Isa::V cv[VA];
    typename Isa::H::V ch;
    for (int v = 0; v < V; ++v) cv[v] = Isa::load(c + v * Isa::W);
    if (T) ch = Isa::H::load(c + V * Isa::W);
    for (int p = 0; p < P; ++p) {
      const float xv = x[p][d];
      const typename Isa::V b = Isa::broadcast(xv);
      for (int v = 0; v < V; ++v) a[p][v] = Isa::fma(b, cv[v], a[p][v]);
      if (T) h[p] = Isa::H::fma(Isa::H::broadcast(xv), ch, h[p]);
    }
  }
  for (int p = 0; p < P; ++p) {
    for (int v = 0; v < V; ++v) Isa::store(scores + p * ld + v * Isa::W, a[p][v]);
    if (T) Isa::H::store(scores + p * ld + V * Isa::W, h[p]);
  }
}

using MicroFn = void (*)(const float* const*, int64_t, int64_t, const float*, int64_t, float*, int64_t, bool);

// The micro-kernel for a tile of `vectors` full vectors and, if `tail`, a half vector (full tiles have no tail).
template <int V>
MicroFn pick(int64_t vectors, bool tail) {
  if constexpr (V == 0) {
    return micro<0, 1>;
  } else if constexpr (V == Isa::kV) {
    return vectors == V ? micro<V, 0> : pick<V - 1>(vectors, tail);
  } else {
    return vectors == V ? (tail ? micro<V, 1> : micro<V, 0>) : pick<V - 1>(vectors, tail);
  }
}

// scores[p * ld + j] = dot(x[p], c[j]) for R fp32 rows c[j] = c + j * D and tile_points(R) points: vectors along D.
template <int R>
void ip_micro(const float* const* x, const float* c, int64_t D, float* scores, int64_t ld) {
  constexpr int P = tile_points(R);
  typename Isa::V a[P][R];
  for (int p = 0; p < P; ++p)
    for (int j = 0; j < R; ++j) a[p][j] = Isa::zero();
  for (int64_t d = 0; d < D; d += Isa::W) {
    const int64_t n = less(Isa::W, D - d);
    typename Isa::V cv[R];
    for (int j = 0; j < R; ++j)
      cv[j] = n == Isa::W ? Isa::load(c + j * D + d) : Isa::load_row(c + j * D, ElemType::f32, d, n);
    for (int p = 0; p < P; ++p) {
      const typename Isa::V xv = n == Isa::W ? Isa::load(x[p] + d) : Isa::load_row(x[p], ElemType::f32, d, n);
      for (int j = 0; j < R; ++j) a[p][j] = Isa::fma(xv, cv[j], a[p][j]);
    }
  }
  for (int p = 0; p < P; ++p)
    for (int j = 0; j < R; ++j) scores[p * ld + j] = Isa::hsum(a[p][j]);
}

using IpFn = void (*)(const float* const*, const float*, int64_t, float*, int64_t);

template <int R>
IpFn pick_ip(int64_t want) {
  if constexpr (R == 1) {
    return ip_micro<1>;
  } else {
    return want == R ? ip_micro<R> : pick_ip<R - 1>(want);
  }
}

// scores[p * round_up(K, W / 2) + k] = dot(x[p], centroid k) for n <= kAcc fp32 rows x[p] of D floats, the K centroids
// c (fp32 rows) and their panels cpack; `zero` (D zeros) stands in for the missing rows of the last point tile. scores
// holds kAcc rows.
void block_dots(const float* const* x, int64_t n, const float* zero, const float* cpack, const float* c, int64_t K,
                int64_t D, float* scores) {
  const int64_t ld = padded(K), tail = tail_centroids(K), Kp = padded(K - tail), span = Isa::kV * Isa::W;
  const float* rows[Isa::kAcc];
  for (int64_t d0 = 0; d0 < D; d0 += kChunk) {
    const int64_t len = less(kChunk, D - d0);
    for (int64_t k0 = 0; k0 < Kp; k0 += span) {
      const int64_t width = less(span, Kp - k0), vectors = width / Isa::W, half = width % Isa::W != 0;
      const int64_t P = tile_points(static_cast<int>(vectors + half));
      const MicroFn fn = pick<Isa::kV>(vectors, half);
      for (int64_t r0 = 0; r0 < n; r0 += P) {
        for (int64_t p = 0; p < P; ++p) rows[p] = r0 + p < n ? x[r0 + p] : zero;
        fn(rows, d0, len, cpack + k0 * D, width, scores + r0 * ld + k0, ld, d0 == 0);
      }
    }
  }
  if (tail == 0) return;
  const int64_t P = tile_points(static_cast<int>(tail));
  const IpFn fn = pick_ip<kHalf / 2>(tail);
  for (int64_t r0 = 0; r0 < n; r0 += P) {
    for (int64_t p = 0; p < P; ++p) rows[p] = r0 + p < n ? x[r0 + p] : zero;
    fn(rows, c + (K - tail) * D, D, scores + r0 * ld + K - tail, ld);
  }
}
