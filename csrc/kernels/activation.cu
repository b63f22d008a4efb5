// ReLU and leaky ReLU, forward and backward.
//
// Strategy: these are pure elementwise maps, so they use the vectorised kernels of elementwise.cuh (16-byte
// accesses, several loads in flight per thread, grid-stride loop) and their speed is the memory bandwidth.  The
// functors below hold the arithmetic only; they are written so that NaN behaves exactly as in PyTorch: ReLU maps
// only v < 0 to 0 (NaN and -0.0 pass), leaky ReLU multiplies every v that is not > 0 (NaN stays NaN).
#include "activation.h"
#include "elementwise.cuh"

namespace deepops {
namespace {

struct ReluOp {
  template <typename C> __device__ __forceinline__ C operator()(C v) const { return v < C(0) ? C(0) : v; }
};

template <typename C> struct LeakyOp {
  C slope;
  __device__ __forceinline__ C operator()(C v) const { return v > C(0) ? v : v * slope; }
};

struct ReluBackwardOp {
  template <typename C> __device__ __forceinline__ C operator()(C grad, C result) const {
    return result <= C(0) ? C(0) : grad;
  }
};

template <typename C> struct LeakyBackwardOp {
  C slope;
  __device__ __forceinline__ C operator()(C grad, C x) const { return x > C(0) ? grad : grad * slope; }
};

}  // namespace

cudaError_t relu_forward(DType dt, const void* x, void* y, int64_t n, cudaStream_t stream) {
  return dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    return launch_unary<T>(x, y, n, ReluOp{}, stream);
  });
}

cudaError_t leaky_relu_forward(DType dt, const void* x, void* y, int64_t n, double slope, cudaStream_t stream) {
  return dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    using C = typename Compute<T>::type;
    return launch_unary<T>(x, y, n, LeakyOp<C>{static_cast<C>(slope)}, stream);
  });
}

cudaError_t relu_backward(DType dt, const void* grad, const void* result, void* grad_input, int64_t n,
                          cudaStream_t stream) {
  return dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    return launch_binary<T>(grad, result, grad_input, n, ReluBackwardOp{}, stream);
  });
}

cudaError_t leaky_relu_backward(DType dt, const void* grad, const void* x, void* grad_input, int64_t n, double slope,
                                cudaStream_t stream) {
  return dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    using C = typename Compute<T>::type;
    return launch_binary<T>(grad, x, grad_input, n, LeakyBackwardOp<C>{static_cast<C>(slope)}, stream);
  });
}

}  // namespace deepops
