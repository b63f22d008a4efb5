// Shared memory and the asynchronous copy global -> shared (sm_80's cp.async), after CUTLASS's memory_sm80.h.
//
// cp_async16(dst, src, src_bytes): copies src_bytes (0..16) bytes and zero-fills the rest of the 16; with 0 the
// source is not read (the padding of a convolution).  Copies are grouped by cp_async_commit(); cp_async_wait<N>()
// waits until at most N committed groups are still in flight (cp_async_wait_all: none).  The emulator reads the
// source at issue and writes shared memory only at the wait (see emulator.h), so a read of a stage that was not
// waited for sees the old bytes.
//
// ldmatrix_x4(r, row) / ldmatrix_x4_trans(r, row) (sm_75's ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16): four
// 8 x 8 matrices of 16-bit elements from shared memory, one warp-wide instruction in place of 16 scalar loads per
// lane.  Lanes 8j .. 8j+7 give the addresses of rows 0..7 of matrix j (16-byte aligned: a row is 16 bytes).  Lane l
// receives in r[j] two elements of matrix j, the lower index in the low half (PTX ISA, "Warp-level matrix load
// instruction: ldmatrix"):  plain: row l/4, columns 2(l%4) and 2(l%4)+1;  .trans: rows 2(l%4) and 2(l%4)+1 of
// column l/4.  Read as 32-bit elements (TF32) the plain form gives lane l element (l/4, l%4) of an 8 x 4 matrix,
// which is the mma.m16n8k8 fragment layout.  The emulator gathers the 32 lanes' row addresses at a warp
// rendezvous and hands out the elements by these rules.
#pragma once

#include <cstdint>
#include <cstring>

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

template <int N> __device__ __forceinline__ void cp_async_wait() {
  static_assert(N >= 0, "groups in flight");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#elif defined(DEEPOPS_EMULATE) && !defined(__CUDA_ARCH__)
  emu::cp_async_wait(N);
#endif
}

__device__ __forceinline__ void cp_async_wait_all() { cp_async_wait<0>(); }

#if defined(DEEPOPS_EMULATE)
namespace detail {
struct LdsmLane {
  const void* row;
  uint32_t* r;
};
template <bool kTrans> void ldmatrix_x4_resolve(void* const* lanes, unsigned) {
  uint16_t m[4][8][8];
  for (int j = 0; j < 4; ++j)
    for (int row = 0; row < 8; ++row) {
      const void* a = static_cast<const LdsmLane*>(lanes[8 * j + row])->row;
      if (reinterpret_cast<uintptr_t>(a) % 16) emu::trap("ldmatrix with a row address that is not 16-byte aligned");
      std::memcpy(m[j][row], a, 16);
    }
  for (int l = 0; l < 32; ++l) {
    auto* lane = static_cast<LdsmLane*>(lanes[l]);
    const int a = l / 4, b = 2 * (l % 4);
    for (int j = 0; j < 4; ++j) {
      const uint16_t lo = kTrans ? m[j][b][a] : m[j][a][b], hi = kTrans ? m[j][b + 1][a] : m[j][a][b + 1];
      lane->r[j] = uint32_t(lo) | (uint32_t(hi) << 16);
    }
  }
}
}  // namespace detail
#endif

template <bool kTrans>
__device__ __forceinline__ void ldmatrix_x4_impl(uint32_t (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(row));
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
#elif defined(__CUDA_ARCH__)
  (void)r, (void)row;
  trap("ldmatrix needs sm_75");
#elif defined(DEEPOPS_EMULATE)
  detail::LdsmLane l{row, r};
  emu::warp_collective(0xFFFFFFFFu, detail::ldmatrix_x4_resolve<kTrans>, &l,
                       kTrans ? "ldmatrix.x4.trans" : "ldmatrix.x4");
#else
  (void)r, (void)row;
#endif
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) { ldmatrix_x4_impl<false>(r, row); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  ldmatrix_x4_impl<true>(r, row);
}

}  // namespace arch
}  // namespace deepops
