// Schema of fastdistill::group_dots: dots[i, k] = points[i] . centroids[groups[i], k] (or centroids[k] without
// groups) in fp32 with fp32 accumulation, through the same packed micro-kernels as assign_modes. A building block for
// k-means++ seeding, whose few candidate centres per step make a skinny matmul that BLAS runs slowly.
//   points [N, D] float32 | float16 | bfloat16, centroids [K, D] or [G, K, D] of the same dtype -> float32 [N, K].
// Kernel: cpu/group_dots_kernel.cpp (CPU only: on CUDA, batched matmul is fast enough); fake: fastdistill/ops/_fake.py.
#include <torch/library.h>

#include "schema.h"

TORCH_LIBRARY_FRAGMENT(fastdistill, m) {
  m.set_python_module(fastdistill::kFakeModule);
  m.def("group_dots(Tensor points, Tensor centroids, Tensor? groups=None) -> Tensor");
}
