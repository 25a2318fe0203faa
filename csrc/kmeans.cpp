// Schema of fastdistill::kmeans_step: one Lloyd iteration's data pass, fused. It assigns every point exactly as
// assign_modes does (same arguments) and also returns, per centroid, the float64 sum of its points and their count
// (the caller turns them into new centroids and re-seeds empty clusters). Sums are accumulated in a fixed order:
// bit-reproducible.
//   Returns index int64 [N], dist float32 [N], sums float64 [K, D] or [G, K, D], counts int64 [K] or [G, K].
// Kernels: cpu/kmeans_kernel.cpp, cuda/kmeans_kernel.cu; fake: fastdistill/ops/_fake.py.
#include <torch/library.h>

#include "schema.h"

TORCH_LIBRARY_FRAGMENT(fastdistill, m) {
  m.set_python_module(fastdistill::kFakeModule);
  m.def(
      "kmeans_step(Tensor points, Tensor centroids, Tensor? groups=None, *, float slack) -> "
      "(Tensor index, Tensor dist, Tensor sums, Tensor counts)");
}
