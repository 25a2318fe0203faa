// CPU nearest-centroid engine shared by assign_modes, kmeans_step and group_dots (see nearest.h), and the choice of
// instruction set for its inner loops (nearest_isa.h).
#include "cpu/nearest.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "checks.h"
#include "cpu/nearest_isa.h"

namespace fastdistill::cpu {
namespace {

// Largest IsaKernels::block_points.
constexpr int64_t kMaxBlock = 24;

// Grain sizes keep small problems on the calling thread (a parallel region costs more than they do).
constexpr int64_t kMinWork = int64_t{1} << 20;

// IsaKernels::sqdist is within a factor 1 +- 2^-20 of the exact distance: two of its values closer than this (relative)
// may rank either way.
constexpr double kNearTie = 0x1p-18;

// ---------------------------------------------------------------------------------------------------------------------
// Instruction set

struct IsaTable {
  std::vector<IsaKernels> available;  // best first; "generic" always last
};

const IsaTable& isa_table() {
  static const IsaTable table = [] {
    IsaTable t;
    IsaKernels k{};
#ifdef FASTDISTILL_X86_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
      avx512_kernels(&k);
      t.available.push_back(k);
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      avx2_kernels(&k);
      t.available.push_back(k);
    }
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

// ---------------------------------------------------------------------------------------------------------------------
// Preparation: centroid panels and norms, points in group order, work items

// The centroids of every group as fp32 rows, packed into d-major panels, with ||c||^2 (computed in float64, used in
// fp32) and the largest centroid norm of each group.
struct Centroids {
  at::Tensor fp32;                  // [G, K, D] contiguous
  const float* base;                // its data
  int64_t K, D, Kp;                 // Kp: K rounded up to half the lane count (the panels' and scores' row length)
  std::unique_ptr<float[]> panels;  // G * Kp * D (left uninitialised: pack_centroids writes all of it)
  std::vector<float> norm2;         // G * K
  std::vector<double> max_norm;     // G

  const float* rows(int64_t g) const { return base + g * K * D; }
  const float* panel(int64_t g) const { return panels.get() + g * Kp * D; }
  const float* norms(int64_t g) const { return norm2.data() + g * K; }
};

Centroids prepare_centroids(const IsaKernels& kern, const at::Tensor& centroids, int64_t G, int64_t K, int64_t D,
                            const float* zero_row) {
  Centroids c{centroids.to(at::kFloat).contiguous(), nullptr, K, D, 0, nullptr, std::vector<float>(G * K),
              std::vector<double>(G, 0.0)};
  c.base = c.fp32.const_data_ptr<float>();
  const int64_t half = kern.lanes / 2;
  c.Kp = (K + half - 1) / half * half;
  c.panels.reset(new float[G * c.Kp * D]);
  at::parallel_for(0, G, std::max<int64_t>(1, kMinWork / (K * D)), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      kern.pack_centroids(c.rows(g), K, D, c.panels.get() + g * c.Kp * D);
      for (int64_t k = 0; k < K; ++k) {
        const double n2 = kern.sqdist_exact(c.rows(g) + k * D, zero_row, D);
        c.norm2[g * K + k] = static_cast<float>(n2);
        c.max_norm[g] = std::max(c.max_norm[g], std::sqrt(n2));
      }
    }
  });
  return c;
}

// The points in group order (a stable counting sort): group g's points are order[offsets[g] .. offsets[g + 1]).
struct GroupOrder {
  std::vector<int64_t> offsets, order;
};

GroupOrder sort_by_group(const std::optional<at::Tensor>& groups, int64_t N, int64_t G) {
  GroupOrder s{std::vector<int64_t>(G + 1, 0), std::vector<int64_t>(N)};
  if (!groups.has_value()) {
    s.offsets[1] = N;
    for (int64_t i = 0; i < N; ++i) s.order[i] = i;
    return s;
  }
  const at::Tensor gt = groups->contiguous();
  const int64_t* gid = gt.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i) {
    TORCH_CHECK(gid[i] >= 0 && gid[i] < G, "assign_modes: group id ", gid[i], " of point ", i, " is outside [0, ", G,
                ")");
    ++s.offsets[gid[i] + 1];
  }
  for (int64_t g = 0; g < G; ++g) s.offsets[g + 1] += s.offsets[g];
  std::vector<int64_t> fill(s.offsets.begin(), s.offsets.end() - 1);
  for (int64_t i = 0; i < N; ++i) s.order[fill[gid[i]]++] = i;
  return s;
}

// A run of consecutive points (in group order) of one group. Items of one group after its first accumulate into a
// private buffer (`slot`), folded into the group's sums in item order afterwards.
struct Item {
  int64_t group, begin, end, slot;
};

struct WorkPlan {
  int64_t span;                      // points per item
  std::vector<Item> items;
  std::vector<int64_t> group_items;  // items of group g: [group_items[g], group_items[g + 1])
  int64_t slots = 0;                 // private sum buffers
};

// Items of at most `span` points. Their size depends only on the problem (never on the thread count), so the k-means
// sums are bit-reproducible; when accumulating, partial buffers take at most 32 * 8 bytes per point.
WorkPlan plan_work(const std::vector<int64_t>& offsets, bool accumulate, int64_t K, int64_t D, int64_t block) {
  const int64_t G = static_cast<int64_t>(offsets.size()) - 1;
  WorkPlan plan{accumulate ? std::max<int64_t>(2048, (K * D / 32 + 15) / 16 * 16) : 10 * block, {},
                std::vector<int64_t>(G + 1, 0)};
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t b = offsets[g]; b < offsets[g + 1]; b += plan.span)
      plan.items.push_back({g, b, std::min(b + plan.span, offsets[g + 1]), b == offsets[g] ? -1 : plan.slots++});
    plan.group_items[g + 1] = static_cast<int64_t>(plan.items.size());
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------------------------------
// Per point: choosing the nearest centroid

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

// Per-thread buffers.
struct Scratch {
  std::vector<float> scores;     // block_points * Kp
  std::vector<float> converted;  // fp16 / bf16 points of one block as fp32 rows
  std::vector<int64_t> cand;     // K
  std::vector<double> cand_dist;
  const void* rows[kMaxBlock];
  const float* frows[kMaxBlock];
};

struct Nearest {
  int64_t index;
  double dist;
};

// The nearest centroid of point x (fp32 row) among its group's K centroids (rows c, squared norms cnorm, largest norm
// max_norm), from its dot products `scores` (overwritten with the scores). The fp32 winner stands unless the second
// best score is within the error window (slack * (2 max_norm + ||x - c_best||)^2); then every centroid the fp32 scores
// cannot rule out (in index order, the fp32 winner included) is ranked by float64 distance (nearest_candidate).
Nearest nearest_of_point(const IsaKernels& kern, const float* x, const float* c, const float* cnorm, double max_norm,
                         int64_t K, int64_t D, double slack, float* scores, Scratch& scratch) {
  float s1, s2;
  Nearest best{kern.top2(cnorm, scores, K, &s1, &s2), 0.0};
  best.dist = kern.sqdist(x, c + best.index * D, D);
  const double r = 2.0 * max_norm + std::sqrt(best.dist);
  const double window = slack * r * r;
  if (static_cast<double>(s2) - s1 > window) return best;
  const double limit = static_cast<double>(s1) + window;
  int64_t m = 0;
  for (int64_t k = 0; k < K; ++k) {
    if (k != best.index && !(static_cast<double>(scores[k]) <= limit)) continue;
    scratch.cand[m] = k;
    scratch.cand_dist[m++] = k == best.index ? best.dist : kern.sqdist(x, c + k * D, D);
  }
  const int64_t at = nearest_candidate(kern, x, c, D, scratch.cand.data(), scratch.cand_dist.data(), m, &best.dist);
  best.index = scratch.cand[at];
  return best;
}

// ---------------------------------------------------------------------------------------------------------------------
// Per work item

// Read-only inputs and the outputs of one nearest_centroids call.
struct Job {
  const IsaKernels& kern;
  const Centroids& centroids;
  const GroupOrder& sorted;
  const char* points;  // N rows of row_bytes bytes
  int64_t row_bytes;
  ElemType type;
  const float* zero_row;  // D zeros: the stand-in for missing rows of a point tile
  double slack;
  int64_t* index;  // [N], unless dots
  float* dist;     // [N], unless dots
  float* dots;     // [N, K] or nullptr
};

// The block of points order[b .. b + n) as fp32 rows in scratch.frows (fp32 points read in place; fp16 / bf16 points
// converted).
void load_block(const Job& job, int64_t b, int64_t n, Scratch& scratch) {
  const int64_t* order = job.sorted.order.data() + b;
  for (int64_t p = 0; p < n; ++p) scratch.rows[p] = job.points + order[p] * job.row_bytes;
  if (job.type == ElemType::f32) {
    for (int64_t p = 0; p < n; ++p) scratch.frows[p] = static_cast<const float*>(scratch.rows[p]);
    return;
  }
  const int64_t D = job.centroids.D;
  job.kern.convert_rows(scratch.rows, n, job.type, D, scratch.converted.data());
  for (int64_t p = 0; p < n; ++p) scratch.frows[p] = scratch.converted.data() + p * D;
}

// Every point of `item`, a block at a time: its dot products (job.dots), or its nearest centroid and distance, also
// added to `acc` ([K, D] float64) when that is given.
void run_item(const Job& job, const Item& item, double* acc, Scratch& scratch) {
  const Centroids& cs = job.centroids;
  const int64_t g = item.group, K = cs.K, D = cs.D, Kp = cs.Kp;
  const int64_t* order = job.sorted.order.data();
  for (int64_t b = item.begin; b < item.end; b += job.kern.block_points) {
    const int64_t n = std::min(job.kern.block_points, item.end - b);
    load_block(job, b, n, scratch);
    job.kern.block_dots(scratch.frows, n, job.zero_row, cs.panel(g), cs.rows(g), K, D, scratch.scores.data());
    if (job.dots != nullptr) {
      for (int64_t p = 0; p < n; ++p) std::copy_n(scratch.scores.data() + p * Kp, K, job.dots + order[b + p] * K);
      continue;
    }
    for (int64_t p = 0; p < n; ++p) {
      const float* x = scratch.frows[p];
      const Nearest best = nearest_of_point(job.kern, x, cs.rows(g), cs.norms(g), cs.max_norm[g], K, D, job.slack,
                                            scratch.scores.data() + p * Kp, scratch);
      const int64_t i = order[b + p];
      job.index[i] = best.index;
      job.dist[i] = static_cast<float>(best.dist);
      if (acc != nullptr) job.kern.accumulate(x, acc + best.index * D, D);
    }
  }
}

// Adds the private buffers of every group's later items to its sums, in item order.
void fold_partial_sums(const WorkPlan& plan, const std::vector<double>& partial, double* sums, int64_t KD) {
  const int64_t G = static_cast<int64_t>(plan.group_items.size()) - 1;
  at::parallel_for(0, G, std::max<int64_t>(1, kMinWork / KD), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g)
      for (int64_t it = plan.group_items[g] + 1; it < plan.group_items[g + 1]; ++it) {
        double* dst = sums + g * KD;
        const double* src = partial.data() + plan.items[it].slot * KD;
        for (int64_t j = 0; j < KD; ++j) dst[j] += src[j];
      }
  });
}

}  // namespace

const char* best_isa() { return isa_table().available.front().name; }

void nearest_centroids(const at::Tensor& points, const at::Tensor& centroids, const std::optional<at::Tensor>& groups,
                       double slack, at::Tensor& index, at::Tensor& dist, at::Tensor* sums, at::Tensor* dots) {
  const NearestShape s = check_nearest_inputs("assign_modes", points, centroids, groups);
  TORCH_CHECK(std::isfinite(slack) && slack >= 0, "assign_modes: slack must be a finite number >= 0, got ", slack);
  const int64_t N = s.N, D = s.D, G = s.G, K = s.K;
  if (N == 0) return;
  const IsaKernels& kern = kernels();
  const at::Tensor x = points.contiguous();
  const std::vector<float> zero_row(D, 0.f);
  const Centroids cs = prepare_centroids(kern, centroids, G, K, D, zero_row.data());
  const GroupOrder sorted = sort_by_group(groups, N, G);
  const WorkPlan plan = plan_work(sorted.offsets, sums != nullptr, K, D, kern.block_points);
  std::vector<double> partial(sums != nullptr ? plan.slots * K * D : 0, 0.0);
  double* sums_base = sums != nullptr ? sums->data_ptr<double>() : nullptr;
  const bool want_dots = dots != nullptr;
  const Job job{kern, cs, sorted, static_cast<const char*>(x.const_data_ptr()),
                D * static_cast<int64_t>(x.element_size()), elem_type(x.scalar_type()), zero_row.data(), slack,
                want_dots ? nullptr : index.data_ptr<int64_t>(), want_dots ? nullptr : dist.data_ptr<float>(),
                want_dots ? dots->data_ptr<float>() : nullptr};

  at::parallel_for(0, static_cast<int64_t>(plan.items.size()), std::max<int64_t>(1, kMinWork / (plan.span * K * D)),
                   [&](int64_t i0, int64_t i1) {
    Scratch scratch;
    scratch.scores.resize(kern.block_points * cs.Kp);
    if (job.type != ElemType::f32) scratch.converted.resize(kern.block_points * D + kern.lanes);
    scratch.cand.resize(K);
    scratch.cand_dist.resize(K);
    for (int64_t it = i0; it < i1; ++it) {
      const Item& item = plan.items[it];
      double* acc = sums_base == nullptr ? nullptr
                    : item.slot < 0      ? sums_base + item.group * K * D
                                         : partial.data() + item.slot * K * D;
      run_item(job, item, acc, scratch);
    }
  });
  if (sums_base != nullptr && plan.slots > 0) fold_partial_sums(plan, partial, sums_base, K * D);
}

}  // namespace fastdistill::cpu
