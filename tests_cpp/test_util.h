// What every C++ kernel test shares: CHECK (fail the test on a CUDA error), the "no GPU" skip that ctest
// understands (exit code 77, SKIP_RETURN_CODE in CMakeLists.txt), and, in the emulated build (DEEPOPS_EMULATE),
// host stand-ins for the few CUDA runtime calls the tests make, so that the same test sources run the kernels on
// the CPU.  (Test scaffolding only: the kernels themselves never call the runtime outside csrc/kernels/arch/.)
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/arch/launch.h"

#if defined(DEEPOPS_EMULATE)
// The toolkit's headers declare the runtime API (extern "C"); these definitions are the emulated device's, for the
// test executables only (one translation unit each).  Allocations are 256-byte aligned, as cudaMalloc's, and of
// the exact size asked, so that AddressSanitizer sees a read or write one byte past the end.
extern "C" cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (posix_memalign(p, 256, bytes ? bytes : 1) != 0) *p = nullptr;
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <typename T> cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
extern "C" cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
extern "C" cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
extern "C" cudaError_t cudaMemset(void* dst, int v, size_t bytes) {
  if (bytes) std::memset(dst, v, bytes);
  return cudaSuccess;
}
extern "C" cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
#endif

#define CHECK(x)                                                                                       \
  do {                                                                                                 \
    cudaError_t e = (x);                                                                               \
    if (e != cudaSuccess) {                                                                            \
      std::printf("CUDA error %s at %s:%d\n", deepops::arch::error_string(e), __FILE__, __LINE__);     \
      return 1;                                                                                        \
    }                                                                                                  \
  } while (0)

// Emulated build: a device of 2 SMs (unless DEEPOPS_EMU_SM_COUNT says otherwise), so that the grid-size caps are
// small and the grid-stride loops wrap at test sizes.  Call first in main(), before any launch.
inline void use_small_emulated_device() {
#if defined(DEEPOPS_EMULATE)
  setenv("DEEPOPS_EMU_SM_COUNT", "2", 0);
#endif
}

// the exit code that ctest reports as "Skipped"
constexpr int kSkipped = 77;

inline bool gpu_present() {
#if defined(DEEPOPS_EMULATE)
  return true;  // the emulated device
#else
  int ndev = 0;
  return cudaGetDeviceCount(&ndev) == cudaSuccess && ndev > 0;
#endif
}
