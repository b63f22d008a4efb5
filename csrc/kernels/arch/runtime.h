// The host side of the CUDA runtime that the launchers and the bindings use, in one place (launch.cu implements
// it): device attributes, the shared-memory opt-in, memset, error messages.  Plain C++: the PyTorch bindings,
// compiled by the host compiler, include it too.
#pragma once

#include <cstddef>

#include "config.h"

namespace deepops {
namespace arch {

// The current device's multiprocessor count and compute capability (cached per device; the emulator's: an H100).
int sm_count();
int compute_capability_major();

// Sets cudaFuncAttributeMaxDynamicSharedMemorySize of `kernel` to at least `bytes`, once per (device, kernel): the
// attribute is set with the largest size asked so far, not on every launch.  (arch::allow_dynamic_smem<Kernel>
// in launch.h is the typed entry point.)
cudaError_t allow_dynamic_smem_impl(const void* kernel, const char* name, size_t bytes);

// cudaMemsetAsync; the emulator's is a memset.
cudaError_t memset_async(void* dst, int value, size_t bytes, cudaStream_t stream);

// The runtime's message for an error; under emulation the message of the failed launch when there is one.
const char* error_string(cudaError_t err);

}  // namespace arch
}  // namespace deepops
