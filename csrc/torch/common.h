// Helpers shared by the bindings: argument checks that raise clear Python exceptions, the device guard and the
// current stream, layout matching, and turning a launcher's cudaError_t into an exception.
//
// The same bindings serve two builds.  The CUDA build (deepops._C) registers the kernels for CUDA tensors.  The
// emulated build (deepops._C_emu, DEEPOPS_EMULATE: the kernels run on the CPU through csrc/kernels/arch/emulator.cpp)
// registers the very same bindings for CPU tensors, so that torch.ops.deepops.* runs the CUDA kernels' code on the
// CPU; there the "device" is the CPU, the stream is null and the guard does nothing.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <ATen/ops/empty_like.h>
#if !defined(DEEPOPS_EMULATE)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "../kernels/arch/runtime.h"
#include "../kernels/common.h"

// The dispatch key the bindings register under (TORCH_LIBRARY_IMPL(deepops, DEEPOPS_DISPATCH_KEY, m)).
#if defined(DEEPOPS_EMULATE)
#define DEEPOPS_DISPATCH_KEY CPU
#else
#define DEEPOPS_DISPATCH_KEY CUDA
#endif

namespace deepops_torch {

using deepops::DType;

// A dtype as Python prints it ("torch.float16", "torch.int64"), so that messages read the same from the C++ and
// the Python checks.
inline std::string py_dtype(at::ScalarType s) {
  switch (s) {
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kByte: return "torch.uint8";
    case at::kChar: return "torch.int8";
    case at::kShort: return "torch.int16";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    case at::kBool: return "torch.bool";
    default: return std::string("torch.") + c10::toString(s);  // the rarer ones in c10's spelling
  }
}

inline DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    default: TORCH_CHECK_TYPE(false, "unsupported dtype ", py_dtype(t.scalar_type()));
  }
  return DType::kFloat32;
}

#if defined(DEEPOPS_EMULATE)
inline bool on_kernel_device(const at::Tensor& t) { return t.is_cpu(); }
constexpr const char* kKernelDevice = "CPU (emulated CUDA)";
// Nothing to guard: the emulated device is the CPU.
struct DeviceGuard {
  explicit DeviceGuard(const c10::Device&) {}
};
inline cudaStream_t current_stream() { return nullptr; }
#else
inline bool on_kernel_device(const at::Tensor& t) { return t.is_cuda(); }
constexpr const char* kKernelDevice = "CUDA";
using DeviceGuard = c10::cuda::CUDAGuard;
inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
#endif

inline void check_float_device(const at::Tensor& t, const char* arg, const char* op) {
  TORCH_CHECK(on_kernel_device(t), "deepops.", op, ": '", arg, "' must be a ", kKernelDevice, " tensor, got one on ",
              t.device());
  const auto s = t.scalar_type();
  TORCH_CHECK_TYPE(s == at::kHalf || s == at::kBFloat16 || s == at::kFloat || s == at::kDouble, "deepops.", op,
                   ": '", arg, "' has dtype ", py_dtype(s),
                   "; supported dtypes are float16, bfloat16, float32 and float64");
}

inline void check_same(const at::Tensor& a, const at::Tensor& b, const char* na, const char* nb, const char* op,
                       bool shape = true) {
  TORCH_CHECK(a.device() == b.device(), "deepops.", op, ": '", na, "' is on ", a.device(), " but '", nb, "' is on ",
              b.device());
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), "deepops.", op, ": '", na, "' has dtype ",
                   py_dtype(a.scalar_type()), " but '", nb, "' has dtype ", py_dtype(b.scalar_type()));
  if (shape)
    TORCH_CHECK_VALUE(a.sizes() == b.sizes(), "deepops.", op, ": '", na, "' has shape ", a.sizes(), " but '", nb,
                      "' has shape ", b.sizes());
}

// t with the strides of the dense tensor ref, copying only when they differ.
inline at::Tensor like(const at::Tensor& t, const at::Tensor& ref) {
  if (t.strides() == ref.strides()) return t;
  at::Tensor out = at::empty_like(ref);
  out.copy_(t);
  return out;
}

inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "deepops.", op, ": CUDA kernel launch failed: ", deepops::arch::error_string(err));
}

}  // namespace deepops_torch
