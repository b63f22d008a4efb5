// Shared declarations of the PyTorch-free kernel library: the dtypes a launcher accepts and the launcher
// conventions.  Every launcher takes raw device pointers, sizes (64-bit) and a cudaStream_t, launches on that
// stream, never synchronises, and returns the cudaError_t of its launch.
#pragma once

#include <cstdint>
#include "arch/config.h"  // CUDA's types and keywords, in the GPU and the emulated build

namespace deepops {

enum class DType : int { kFloat16 = 0, kBFloat16 = 1, kFloat32 = 2, kFloat64 = 3 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
  }
  return "unknown";
}

}  // namespace deepops
