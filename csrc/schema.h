// Shared by the schema files (csrc/<op>.cpp).
#pragma once

namespace fastdistill {

// The Python module with the fake (meta) implementations of the fastdistill:: ops, which torch.compile needs. Every
// schema file names it (m.set_python_module) so torch can say where they live; fastdistill/_extension.py imports it
// whenever it loads _C.
inline constexpr const char* kFakeModule = "fastdistill.ops._fake";

}  // namespace fastdistill
