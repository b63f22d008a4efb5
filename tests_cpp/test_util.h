// What every C++ kernel test shares: CHECK (fail the test on a CUDA error) and the "no GPU" skip that ctest
// understands (exit code 77, SKIP_RETURN_CODE in CMakeLists.txt).
#pragma once

#include <cstdio>
#include <cuda_runtime.h>

#define CHECK(x)                                                                           \
  do {                                                                                     \
    cudaError_t e = (x);                                                                   \
    if (e != cudaSuccess) {                                                                \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e), __FILE__, __LINE__); \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

// the exit code that ctest reports as "Skipped"
constexpr int kSkipped = 77;

inline bool gpu_present() {
  int ndev = 0;
  return cudaGetDeviceCount(&ndev) == cudaSuccess && ndev > 0;
}
