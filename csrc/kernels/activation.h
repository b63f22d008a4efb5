// ReLU and leaky ReLU launchers (PyTorch-free).  x and y may be the same pointer (in place).  n is the number
// of elements of dense buffers; the slope is rounded to the compute type (float for 16-bit types) as PyTorch does.
#pragma once

#include "common.h"

namespace deepops {

cudaError_t relu_forward(DType dt, const void* x, void* y, int64_t n, cudaStream_t stream);
cudaError_t leaky_relu_forward(DType dt, const void* x, void* y, int64_t n, double slope, cudaStream_t stream);
// grad_input = result <= 0 ? 0 : grad  (PyTorch's threshold_backward on the forward's result)
cudaError_t relu_backward(DType dt, const void* grad, const void* result, void* grad_input, int64_t n,
                          cudaStream_t stream);
// grad_input = x > 0 ? grad : grad * slope
cudaError_t leaky_relu_backward(DType dt, const void* grad, const void* x, void* grad_input, int64_t n, double slope,
                                cudaStream_t stream);

}  // namespace deepops
