// Schema of fastdistill::assign_modes: nearest centroid by squared Euclidean distance, ties to the lowest index.
//   points [N, D] float32 | float16 | bfloat16; centroids [K, D] (no groups) or [G, K, D] with groups int64 [N] in
//   [0, G): each point is compared only with its own group's K centroids.
//   Returns index int64 [N] (in [0, K)) and dist float32 [N] (the squared distance, accumulated in float64).
// Kernels: cpu/assign_modes_kernel.cpp, cuda/assign_modes_kernel.cu.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fastdistill, m) {
  m.def("assign_modes(Tensor points, Tensor centroids, Tensor? groups=None) -> (Tensor index, Tensor dist)");
}
