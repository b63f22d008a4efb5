// Block and warp barriers (__syncthreads, __syncthreads_or, __syncwarp): device bodies and the emulator's.
#pragma once

#include "config.h"
#if defined(DEEPOPS_EMULATE)
#include "emulator.h"
#endif

namespace deepops {
namespace arch {

// Every thread of the block must reach the same barrier.
__device__ __forceinline__ void sync_threads() {
#if defined(__CUDA_ARCH__)
  __syncthreads();
#elif defined(DEEPOPS_EMULATE)
  emu::barrier();
#endif
}

// A barrier that also returns non-zero to every thread when any thread's predicate is non-zero.
__device__ __forceinline__ int sync_threads_or(int predicate) {
#if defined(__CUDA_ARCH__)
  return __syncthreads_or(predicate);
#elif defined(DEEPOPS_EMULATE)
  return emu::barrier_or(predicate);
#else
  return predicate;
#endif
}

#if defined(DEEPOPS_EMULATE)
namespace detail {
inline void no_op_resolve(void* const*, unsigned) {}
}  // namespace detail
#endif

// The lanes of `mask` meet (every lane of the mask must call it).
__device__ __forceinline__ void sync_warp(unsigned mask = 0xFFFFFFFFu) {
#if defined(__CUDA_ARCH__)
  __syncwarp(mask);
#elif defined(DEEPOPS_EMULATE)
  emu::warp_collective(mask, detail::no_op_resolve, nullptr, "__syncwarp");
#else
  (void)mask;
#endif
}

}  // namespace arch
}  // namespace deepops
