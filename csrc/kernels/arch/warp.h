// Warp shuffles (__shfl_sync, __shfl_xor_sync) for 32- and 64-bit values.  In the emulator the lanes of the mask
// meet at a rendezvous and one resolver reads every lane's value; a lane that reads from a lane outside the mask
// gets all-ones bits (the hardware's value is undefined), so such a read shows up in results.
#pragma once

#include <cstring>
#include <type_traits>

#include "config.h"
#if defined(DEEPOPS_EMULATE)
#include "emulator.h"
#endif

namespace deepops {
namespace arch {

#if defined(DEEPOPS_EMULATE)
namespace detail {
template <typename T> struct ShflLane {
  T value;
  int src;  // source lane (idx) or lane mask (xor)
  T result;
};
template <typename T, bool kXor> void shfl_resolve(void* const* lanes, unsigned mask) {
  for (int lane = 0; lane < 32; ++lane) {
    if (!lanes[lane]) continue;
    auto* me = static_cast<ShflLane<T>*>(lanes[lane]);
    const int src = kXor ? (lane ^ me->src) & 31 : me->src & 31;
    if ((mask >> src) & 1u) me->result = static_cast<ShflLane<T>*>(lanes[src])->value;
    else std::memset(&me->result, 0xFF, sizeof(T));
  }
}
template <typename T, bool kXor> T shfl(unsigned mask, T v, int src, const char* what) {
  ShflLane<T> d{v, src, T{}};
  emu::warp_collective(mask, shfl_resolve<T, kXor>, &d, what);
  return d.result;
}
}  // namespace detail
#endif

// Value of `v` at lane `src` (mod 32).
template <typename T> __device__ __forceinline__ T shfl(unsigned mask, T v, int src) {
  static_assert(std::is_arithmetic<T>::value && (sizeof(T) == 4 || sizeof(T) == 8), "32- or 64-bit values");
#if defined(__CUDA_ARCH__)
  return __shfl_sync(mask, v, src);
#elif defined(DEEPOPS_EMULATE)
  return detail::shfl<T, false>(mask, v, src, "__shfl_sync");
#else
  (void)mask, (void)src;
  return v;
#endif
}

// Value of `v` at lane (laneid XOR lane_mask): the butterfly of a warp reduction.
template <typename T> __device__ __forceinline__ T shfl_xor(unsigned mask, T v, int lane_mask) {
  static_assert(std::is_arithmetic<T>::value && (sizeof(T) == 4 || sizeof(T) == 8), "32- or 64-bit values");
#if defined(__CUDA_ARCH__)
  return __shfl_xor_sync(mask, v, lane_mask);
#elif defined(DEEPOPS_EMULATE)
  return detail::shfl<T, true>(mask, v, lane_mask, "__shfl_xor_sync");
#else
  (void)mask, (void)lane_mask;
  return v;
#endif
}

}  // namespace arch
}  // namespace deepops
