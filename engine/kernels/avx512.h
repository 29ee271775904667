#ifndef DSV3_ENGINE_KERNELS_AVX512_H_
#define DSV3_ENGINE_KERNELS_AVX512_H_

// What the AVX-512 kernels of this folder share: the intrinsics, the target attribute their
// functions carry (the rest of the binary stays baseline x86-64, so one build runs on any CI
// machine), and whether this CPU runs them. Include it from .cc files only: it turns off two
// GCC warnings for the including file.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12's intrinsic headers trip -W(maybe-)uninitialized on their own _mm512_undefined_*
// placeholders (a known false positive, GCC PR 105593).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#define DSV3_HAVE_AVX512_KERNEL 1
#define DSV3_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define DSV3_AVX512_INLINE DSV3_AVX512 __attribute__((always_inline)) inline

namespace dsv3::engine {

// AVX-512 F, BW, VL and DQ: what the kernels compiled with DSV3_AVX512 use.
inline bool CpuHasAvx512() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return has;
}

}  // namespace dsv3::engine

#endif

#endif  // DSV3_ENGINE_KERNELS_AVX512_H_
