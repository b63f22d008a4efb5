// Shared memory and the asynchronous copy global -> shared (sm_80's cp.async), after CUTLASS's memory_sm80.h.
//
// cp_async16(dst, src, src_bytes): copies src_bytes (0..16) bytes and zero-fills the rest of the 16; with 0 the
// source is not read (the padding of a convolution).  Copies are grouped by cp_async_commit(); cp_async_wait_all()
// waits for every committed group.  The emulator reads the source at issue and writes shared memory only at the
// wait (see emulator.h), so a read of a stage that was not waited for sees the old bytes.
#pragma once

#include "config.h"
#include "instructions.h"
#if defined(DEEPOPS_EMULATE)
#include "emulator.h"
#endif

// The kernel's dynamic shared memory as an array `name` of `type` (extern __shared__), 16-byte aligned.
#if defined(DEEPOPS_EMULATE)
#define DEEPOPS_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::deepops::emu::dynamic_shared())
#else
#define DEEPOPS_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

namespace deepops {
namespace arch {

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
#elif defined(__CUDA_ARCH__)
  (void)smem, (void)gmem, (void)src_bytes;
  trap("cp.async needs sm_80");
#elif defined(DEEPOPS_EMULATE)
  emu::cp_async16(smem, gmem, src_bytes);
#else
  (void)smem, (void)gmem, (void)src_bytes;
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#elif defined(DEEPOPS_EMULATE) && !defined(__CUDA_ARCH__)
  emu::cp_async_commit();
#endif
}

__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#elif defined(DEEPOPS_EMULATE) && !defined(__CUDA_ARCH__)
  emu::cp_async_wait(0);
#endif
}

}  // namespace arch
}  // namespace deepops
