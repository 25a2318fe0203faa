// Vector operations over the x86 intrinsics, for the Isa policies of nearest_avx2.cpp and nearest_avx512.cpp.
//
// The intrinsics are named <prefix>_<operation>_<suffix> at every width (prefix _mm, _mm256 or _mm512; suffix ps for
// fp32, pd for float64), so one macro writes the operations of a vector type once: FASTDISTILL_X86_OPS(Name, T, P, S,
// E) defines struct Name with V = T (of elements E) and zero, load, store, broadcast, fma, sub and add, each the
// intrinsic P_<operation>_S. Invoke it inside the anonymous namespace and target-pragma region of the file that uses
// it, so that each instantiation is compiled for that file's instruction set only (this header includes nothing).
#pragma once

#define FASTDISTILL_X86_OPS(Name, T, P, S, E)                        \
  struct Name {                                                      \
    using V = T;                                                     \
    static V zero() { return P##_setzero_##S(); }                    \
    static V load(const E* p) { return P##_loadu_##S(p); }           \
    static void store(E* p, V v) { P##_storeu_##S(p, v); }          \
    static V broadcast(E x) { return P##_set1_##S(x); }              \
    static V fma(V a, V b, V c) { return P##_fmadd_##S(a, b, c); }   \
    static V sub(V a, V b) { return P##_sub_##S(a, b); }             \
    static V add(V a, V b) { return P##_add_##S(a, b); }             \
  }
