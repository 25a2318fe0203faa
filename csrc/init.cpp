// Module entry point of fastdistill._C and the fastdistill::build_info op.
//
// Importing the module (a hand-written PyInit__C: no pybind11) runs the static TORCH_LIBRARY registrations of every
// translation unit; the ops are then reached through torch.ops.fastdistill.
#include <Python.h>
#include <torch/library.h>
#include <torch/version.h>

#include <string>

#include "cpu/nearest.h"

#ifdef WITH_CUDA
namespace fastdistill::cuda {
int built_cuda_version();  // CUDART_VERSION the CUDA kernels were compiled with (cuda/nearest.cu)
}
#endif

namespace {

// What this binary was built against, as JSON (read by fastdistill/_extension.py).
std::string build_info() {
  std::string cuda = "false", cuda_version = "null";
#ifdef WITH_CUDA
  const int v = fastdistill::cuda::built_cuda_version();
  cuda = "true";
  cuda_version = "\"" + std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10) + "\"";
#endif
  return std::string("{\"torch\": \"") + TORCH_VERSION + "\", \"cuda\": " + cuda + ", \"cuda_version\": " +
         cuda_version + ", \"cpu_isa\": \"" + fastdistill::cpu::best_isa() + "\", \"compiler\": \"" + __VERSION__ +
         "\"}";
}

}  // namespace

TORCH_LIBRARY(fastdistill, m) { m.def("build_info() -> str", &build_info); }

PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "fastdistill compiled ops (see torch.ops.fastdistill)", -1,
                               nullptr};
  return PyModule_Create(&module);
}
