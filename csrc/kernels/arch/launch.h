// One way to launch a kernel, size its grid and ask for its resources, in both builds (see config.h).
//
//   launch<kernel<T>>(grid, block, dynamic_smem, stream, args...)  ->  cudaError_t of the launch
//
// nvcc: kernel<<<grid, block, smem, stream>>>(args...) then cudaGetLastError().  DEEPOPS_EMULATE: the arguments are
// converted to the kernel's parameter types once, as a launch does, and arch/emulator.cpp runs the grid on the CPU.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>

#include "config.h"
#include "runtime.h"
#if defined(DEEPOPS_EMULATE)
#include "emulator.h"
#elif !defined(__CUDACC__)
#error "arch/launch.h launches kernels: include it from .cu files (the bindings include arch/runtime.h)"
#endif

namespace deepops {
namespace arch {

namespace detail {
template <class F> struct Params;
template <class... P> struct Params<void (*)(P...)> {
  using tuple = std::tuple<P...>;
};
}  // namespace detail

// The kernel's name with its template arguments, e.g. "deepops::{anonymous}::fwd_nchw<float, int, true>" (for
// the emulator's launch counts and messages).
namespace detail {
// "... [with auto Kernel = NAME]" (GCC; Clang: "[Kernel = &NAME]") -> "NAME"
inline std::string name_from_signature(const std::string& f) {
  const size_t at = f.find("Kernel = ");
  if (at == std::string::npos) return f;
  std::string n = f.substr(at + 9, f.rfind(']') - at - 9);
  if (!n.empty() && n[0] == '&') n.erase(0, 1);
  return n;
}
}  // namespace detail

template <auto Kernel> const char* kernel_name() {
  static const std::string name = detail::name_from_signature(__PRETTY_FUNCTION__);
  return name.c_str();
}

#if defined(DEEPOPS_EMULATE)
// One static per kernel instantiation that arch::launch can launch; its initialiser registers the kernel with the
// emulator when the library loads (the denominator of the coverage report).
template <auto Kernel> struct Registration {
  static const bool done;
};
template <auto Kernel> const bool Registration<Kernel>::done = emu::register_kernel(kernel_name<Kernel>());
#endif

// Whether kernels with 32- and 64-bit index variants must take the 64-bit one (a test hook of the emulated build;
// always false on the GPU).
inline bool force_64bit_indices() {
#if defined(DEEPOPS_EMULATE)
  return emu::force_64bit_indices();
#else
  return false;
#endif
}

template <auto Kernel, class... Args>
cudaError_t launch(dim3 grid, dim3 block, size_t dynamic_smem, cudaStream_t stream, const Args&... args) {
#if defined(DEEPOPS_EMULATE)
  (void)stream;  // the emulator runs each launch to completion, in order
  (void)Registration<Kernel>::done;
  using Tuple = typename detail::Params<decltype(Kernel)>::tuple;
  Tuple params(args...);
  auto body = [](void* p) { std::apply(Kernel, *static_cast<Tuple*>(p)); };
  return emu::run_grid(kernel_name<Kernel>(), grid, block, dynamic_smem, body, &params);
#else
  Kernel<<<grid, block, dynamic_smem, stream>>>(args...);
  return cudaGetLastError();
#endif
}

// The largest grid extent along y and z (x goes to 2^31 - 1).
constexpr int64_t kMaxGridYZ = 65535;

// Blocks of `threads` threads for `work` items, `per_thread` items per thread; with blocks_per_sm > 0 capped at
// that many blocks per SM (a grid-stride loop covers the rest); never below 1 or above `max_blocks`.
inline unsigned grid_1d(int64_t work, int threads, int per_thread = 1, int blocks_per_sm = 0,
                        int64_t max_blocks = 2147483647) {
  const int64_t per_block = static_cast<int64_t>(threads) * per_thread;
  int64_t b = (work + per_block - 1) / per_block;
  if (blocks_per_sm > 0) b = b < int64_t(sm_count()) * blocks_per_sm ? b : int64_t(sm_count()) * blocks_per_sm;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

// Opt-in of a kernel to more than the default 48 KiB of dynamic shared memory, cached per device and kernel (see
// allow_dynamic_smem_impl in runtime.h).
template <auto Kernel> cudaError_t allow_dynamic_smem(size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return allow_dynamic_smem_impl(reinterpret_cast<const void*>(Kernel), kernel_name<Kernel>(), bytes);
}

}  // namespace arch
}  // namespace deepops
