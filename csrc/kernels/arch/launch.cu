// The host side of arch/launch.h: nvcc compiles it in the GPU build, the host compiler (as C++) in the
// emulated one.
#include "launch.h"

#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

namespace deepops {
namespace arch {

namespace {
constexpr int kMaxDevices = 64;

template <class F> int cached_attribute(int (&cache)[kMaxDevices], F query) {
  int dev = 0;
#if !defined(DEEPOPS_EMULATE)
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) return query(-1);
#endif
  if (cache[dev] == 0) cache[dev] = query(dev);
  return cache[dev];
}
}  // namespace

int sm_count() {
  static int cache[kMaxDevices] = {};
  return cached_attribute(cache, [](int dev) {
#if defined(DEEPOPS_EMULATE)
    (void)dev;
    return emu::sm_count();
#else
    int n = 0;
    if (dev >= 0) cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n > 0 ? n : 80;
#endif
  });
}

int compute_capability_major() {
  static int cache[kMaxDevices] = {};
  return cached_attribute(cache, [](int dev) {
#if defined(DEEPOPS_EMULATE)
    (void)dev;
    return emu::compute_capability_major();
#else
    int major = 0;
    if (dev >= 0) cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    return major;
#endif
  });
}

cudaError_t allow_dynamic_smem_impl(const void* kernel, const char* name, size_t bytes) {
  static std::mutex m;
  static std::vector<std::pair<std::pair<int, const void*>, size_t>> granted;  // ((device, kernel), bytes)
  int dev = 0;
#if !defined(DEEPOPS_EMULATE)
  if (cudaError_t e = cudaGetDevice(&dev); e != cudaSuccess) return e;
#endif
  std::lock_guard<std::mutex> lock(m);
  for (auto& g : granted)
    if (g.first == std::make_pair(dev, kernel) && g.second >= bytes) return cudaSuccess;
#if defined(DEEPOPS_EMULATE)
  const cudaError_t e = emu::allow_dynamic_smem(name, bytes);
#else
  (void)name;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes));
#endif
  if (e != cudaSuccess) return e;
  for (auto& g : granted)
    if (g.first == std::make_pair(dev, kernel)) { g.second = bytes; return cudaSuccess; }
  granted.push_back({{dev, kernel}, bytes});
  return cudaSuccess;
}

cudaError_t memset_async(void* dst, int value, size_t bytes, cudaStream_t stream) {
#if defined(DEEPOPS_EMULATE)
  (void)stream;
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
#else
  return cudaMemsetAsync(dst, value, bytes, stream);
#endif
}

const char* error_string(cudaError_t err) {
#if defined(DEEPOPS_EMULATE)
  if (err == cudaSuccess) return "no error";
  const char* m = emu::last_error_message();
  if (m && *m) return m;
  switch (err) {
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorMemoryAllocation: return "out of memory";
    default: return "CUDA error (emulated build)";
  }
#else
  return cudaGetErrorString(err);
#endif
}

}  // namespace arch
}  // namespace deepops
