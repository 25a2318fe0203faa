// CPU kernel of fastdistill::assign_modes and the nearest-centroid engine it shares with kmeans_step.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "checks.h"
#include "cpu/nearest.h"
#include "cpu/nearest_isa.h"

namespace fastdistill::cpu {
namespace {

// Largest IsaKernels::block_points.
constexpr int64_t kMaxBlock = 24;

struct IsaTable {
  std::vector<IsaKernels> available;  // best first; "generic" always last
};

const IsaTable& isa_table() {
  static const IsaTable table = [] {
    IsaTable t;
    IsaKernels k{};
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && avx512_kernels(&k))
      t.available.push_back(k);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && avx2_kernels(&k))
      t.available.push_back(k);
#endif
    generic_kernels(&k);
    t.available.push_back(k);
    for (const IsaKernels& isa : t.available) TORCH_INTERNAL_ASSERT(isa.block_points <= kMaxBlock, isa.name);
    return t;
  }();
  return table;
}

// The best kernels for this CPU, or the ones named by FASTDISTILL_CPU_ISA (read on every call, for tests).
const IsaKernels& kernels() {
  const IsaTable& t = isa_table();
  const char* want = std::getenv("FASTDISTILL_CPU_ISA");
  if (want == nullptr || *want == '\0') return t.available.front();
  std::string names;
  for (const IsaKernels& k : t.available) {
    if (want == std::string(k.name)) return k;
    names += std::string(names.empty() ? "" : ", ") + k.name;
  }
  TORCH_CHECK(false, "FASTDISTILL_CPU_ISA=", want, " is not available on this CPU; use one of: ", names);
}

ElemType elem_type(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return ElemType::f16;
    case at::kBFloat16: return ElemType::bf16;
    default: return ElemType::f32;
  }
}

// A run of consecutive points (in group-sorted order) of one group. Items of one group after its first accumulate
// into a private buffer (`slot`), folded into the group's sums in item order afterwards.
struct Item {
  int64_t group, begin, end, slot;
};

// IsaKernels::sqdist is within a factor 1 +- 2^-20 of the exact distance: two of its values closer than this (relative)
// may rank either way.
constexpr double kNearTie = 0x1p-18;

// The nearest of m candidate centroids (rows c + cand[j] * D, ascending indices) of point x, given their sqdist values
// `fast`: the lowest one, or, when others are within kNearTie of it, the lowest exact distance (sqdist_exact) among
// those, ties to the lowest index. Returns its position j and sets *dist to its distance.
int64_t nearest_candidate(const IsaKernels& kern, const float* x, const float* c, int64_t D, const int64_t* cand,
                          const double* fast, int64_t m, double* dist) {
  int64_t at = 0, close = 0;
  for (int64_t j = 1; j < m; ++j) at = fast[j] < fast[at] ? j : at;
  const double near = fast[at] + fast[at] * kNearTie;
  for (int64_t j = 0; j < m; ++j) close += fast[j] <= near ? 1 : 0;
  *dist = fast[at];
  if (close < 2) return at;
  bool found = false;
  for (int64_t j = 0; j < m; ++j) {
    if (!(fast[j] <= near)) continue;
    const double exact = kern.sqdist_exact(x, c + cand[j] * D, D);
    if (!found || exact < *dist) {
      at = j;
      *dist = exact;
      found = true;
    }
  }
  return at;
}

}  // namespace

const char* best_isa() { return isa_table().available.front().name; }

void nearest_centroids(const at::Tensor& points, const at::Tensor& centroids, const std::optional<at::Tensor>& groups,
                       at::Tensor& index, at::Tensor& dist, at::Tensor* sums, at::Tensor* dots) {
  const NearestShape s = check_nearest_inputs("assign_modes", points, centroids, groups);
  const int64_t N = s.N, D = s.D, G = s.G, K = s.K;
  if (N == 0) return;
  const IsaKernels& kern = kernels();
  const at::Tensor x = points.contiguous();
  const at::Tensor c = centroids.to(at::kFloat).contiguous();
  const ElemType type = elem_type(x.scalar_type());
  const auto* xbase = static_cast<const char*>(x.const_data_ptr());
  const int64_t row_bytes = D * static_cast<int64_t>(x.element_size());
  const float* cbase = c.const_data_ptr<float>();

  const int64_t W = kern.lanes, Kp = (K + W / 2 - 1) / (W / 2) * (W / 2), block = kern.block_points;
  // fp32 rows are read in place; fp16 / bf16 rows are converted a block at a time.
  const bool in_place = type == ElemType::f32;
  // Packed centroid panels, ||c||^2 (computed in float64, used in fp32) and the largest centroid norm of each group.
  // (cpack is left uninitialised: pack_centroids writes all of it, in parallel.)
  const std::unique_ptr<float[]> cpack(new float[G * Kp * D]);
  std::vector<float> cnorm(G * K);
  std::vector<double> cmax(G, 0.0);
  const std::vector<float> origin(D, 0.f);  // for ||c||^2, and the stand-in for missing rows of a point tile
  // Grain sizes keep small problems on the calling thread (a parallel region costs more than they do).
  constexpr int64_t kMinWork = int64_t{1} << 20;
  at::parallel_for(0, G, std::max<int64_t>(1, kMinWork / (K * D)), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      kern.pack_centroids(cbase + g * K * D, K, D, cpack.get() + g * Kp * D);
      for (int64_t k = 0; k < K; ++k) {
        const double n2 = kern.sqdist_exact(cbase + (g * K + k) * D, origin.data(), D);
        cnorm[g * K + k] = static_cast<float>(n2);
        cmax[g] = std::max(cmax[g], std::sqrt(n2));
      }
    }
  });

  // Stable counting sort of the points by group.
  std::vector<int64_t> offsets(G + 1, 0), order(N);
  if (groups.has_value()) {
    const at::Tensor gt = groups->contiguous();
    const int64_t* gid = gt.const_data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i) {
      TORCH_CHECK(gid[i] >= 0 && gid[i] < G, "assign_modes: group id ", gid[i], " of point ", i, " is outside [0, ", G,
                  ")");
      ++offsets[gid[i] + 1];
    }
    for (int64_t g = 0; g < G; ++g) offsets[g + 1] += offsets[g];
    std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
    for (int64_t i = 0; i < N; ++i) order[fill[gid[i]]++] = i;
  } else {
    offsets[1] = N;
    for (int64_t i = 0; i < N; ++i) order[i] = i;
  }

  // Work items. Their size depends only on the problem (never on the thread count), so the k-means sums are
  // bit-reproducible; when accumulating, partial buffers take at most 32 * 8 bytes per point.
  const bool update = sums != nullptr;
  const int64_t span = update ? std::max<int64_t>(2048, (K * D / 32 + 15) / 16 * 16) : 10 * block;
  std::vector<Item> items;
  std::vector<int64_t> group_items(G + 1, 0);  // items of group g: [group_items[g], group_items[g + 1])
  int64_t slots = 0;
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t b = offsets[g]; b < offsets[g + 1]; b += span)
      items.push_back({g, b, std::min(b + span, offsets[g + 1]), b == offsets[g] ? -1 : slots++});
    group_items[g + 1] = static_cast<int64_t>(items.size());
  }
  std::vector<double> partial(update ? slots * K * D : 0, 0.0);
  double* sums_base = update ? sums->data_ptr<double>() : nullptr;

  float* out_dots = dots != nullptr ? dots->data_ptr<float>() : nullptr;
  int64_t* out_index = out_dots == nullptr ? index.data_ptr<int64_t>() : nullptr;
  float* out_dist = out_dots == nullptr ? dist.data_ptr<float>() : nullptr;
  // |error| of each fp32 score is at most 2 gamma_{D+2} (||x|| + ||c||max)^2 (gamma_n = n u / (1 - n u), u = 2^-24),
  // and ||x|| <= ||c_best|| + sqrt(d_best). Two scores closer than twice that bound are re-checked exactly.
  const double u = std::ldexp(1.0, -24);
  const double gamma = (D + 2) * u / (1.0 - (D + 2) * u);
  const double slack = 4.5 * gamma;  // 2 x 2 gamma, plus room for the rounding of the norms themselves

  at::parallel_for(0, static_cast<int64_t>(items.size()), std::max<int64_t>(1, kMinWork / (span * K * D)),
                   [&](int64_t i0, int64_t i1) {
    std::vector<float> scores(block * Kp), converted(in_place ? 0 : block * D + W);
    std::vector<int64_t> cand(K);
    std::vector<double> cand_dist(K);
    const void* rows[kMaxBlock];
    const float* frows[kMaxBlock];
    for (int64_t it = i0; it < i1; ++it) {
      const Item& item = items[it];
      const int64_t g = item.group;
      const float* cg = cpack.get() + g * Kp * D;
      const float* cn = cnorm.data() + g * K;
      double* acc = !update ? nullptr : item.slot < 0 ? sums_base + g * K * D : partial.data() + item.slot * K * D;
      for (int64_t b = item.begin; b < item.end; b += block) {
        const int64_t n = std::min(block, item.end - b);
        for (int64_t p = 0; p < n; ++p) rows[p] = xbase + order[b + p] * row_bytes;
        if (in_place) {
          for (int64_t p = 0; p < n; ++p) frows[p] = static_cast<const float*>(rows[p]);
        } else {
          kern.convert_rows(rows, n, type, D, converted.data());
          for (int64_t p = 0; p < n; ++p) frows[p] = converted.data() + p * D;
        }
        kern.block_dots(frows, n, origin.data(), cg, cbase + g * K * D, K, D, scores.data());
        if (out_dots != nullptr) {
          for (int64_t p = 0; p < n; ++p) std::copy_n(scores.data() + p * Kp, K, out_dots + order[b + p] * K);
          continue;
        }
        for (int64_t p = 0; p < n; ++p) {
          float* sc = scores.data() + p * Kp;
          float s1, s2;
          int64_t best = kern.top2(cn, sc, K, &s1, &s2);
          const float* xp = frows[p];
          const float* cr = cbase + g * K * D;
          double dbest = kern.sqdist(xp, cr + best * D, D);
          const double r = 2.0 * cmax[g] + std::sqrt(dbest);
          const double window = slack * r * r;
          if (!(static_cast<double>(s2) - s1 > window)) {
            // Every centroid the fp32 scores cannot rule out (in index order, the fp32 winner included), ranked by
            // float64 distance; the ones within that distance's own error of the lowest are ranked exactly.
            const double limit = static_cast<double>(s1) + window;
            int64_t m = 0;
            for (int64_t k = 0; k < K; ++k) {
              if (k != best && !(static_cast<double>(sc[k]) <= limit)) continue;
              cand[m] = k;
              cand_dist[m++] = k == best ? dbest : kern.sqdist(xp, cr + k * D, D);
            }
            const int64_t at = nearest_candidate(kern, xp, cr, D, cand.data(), cand_dist.data(), m, &dbest);
            best = cand[at];
          }
          const int64_t i = order[b + p];
          out_index[i] = best;
          out_dist[i] = static_cast<float>(dbest);
          if (acc != nullptr) kern.accumulate(xp, acc + best * D, D);
        }
      }
    }
  });

  if (update && slots > 0) {
    at::parallel_for(0, G, std::max<int64_t>(1, kMinWork / (K * D)), [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g)
        for (int64_t it = group_items[g] + 1; it < group_items[g + 1]; ++it) {
          double* dst = sums_base + g * K * D;
          const double* src = partial.data() + items[it].slot * K * D;
          for (int64_t j = 0; j < K * D; ++j) dst[j] += src[j];
        }
    });
  }
}

namespace {

std::tuple<at::Tensor, at::Tensor> assign_modes_cpu(const at::Tensor& points, const at::Tensor& centroids,
                                                    const std::optional<at::Tensor>& groups) {
  check_nearest_inputs("assign_modes", points, centroids, groups);
  at::Tensor index = at::empty({points.size(0)}, points.options().dtype(at::kLong));
  at::Tensor dist = at::empty({points.size(0)}, points.options().dtype(at::kFloat));
  nearest_centroids(points, centroids, groups, index, dist, nullptr, nullptr);
  return {index, dist};
}

}  // namespace
}  // namespace fastdistill::cpu

TORCH_LIBRARY_IMPL(fastdistill, CPU, m) { m.impl("assign_modes", TORCH_FN(fastdistill::cpu::assign_modes_cpu)); }
