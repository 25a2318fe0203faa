// Schema of fastdistill::assign_modes: nearest centroid by squared Euclidean distance, ties to the lowest index.
//   points [N, D] float32 | float16 | bfloat16; centroids [K, D] (no groups) or [G, K, D] with groups int64 [N] in
//   [0, G): each point is compared only with its own group's K centroids. slack: the relative error bound of the fp32
//   scores, within which candidates are re-ranked in float64 (fastdistill/ops/rerank_bound.py computes it).
//   Returns index int64 [N] (in [0, K)) and dist float32 [N] (the squared distance, accumulated in float64).
// Kernels: cpu/assign_modes_kernel.cpp, cuda/assign_modes_kernel.cu; fake: fastdistill/ops/_fake.py.
#include <torch/library.h>

#include "schema.h"

TORCH_LIBRARY_FRAGMENT(fastdistill, m) {
  m.set_python_module(fastdistill::kFakeModule);
  m.def(
      "assign_modes(Tensor points, Tensor centroids, Tensor? groups=None, *, float slack) -> "
      "(Tensor index, Tensor dist)");
}
