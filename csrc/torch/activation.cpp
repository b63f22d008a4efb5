// CUDA binding of relu / leaky_relu (forward, in place, backward): checks, layout, stream, launcher call.
// Outputs take torch.empty_like(input)'s layout, as PyTorch's elementwise ops and deepops' fake kernels do.
#include <torch/library.h>

#include "../kernels/activation.h"
#include "common.h"

namespace deepops_torch {
namespace {

at::Tensor relu(const at::Tensor& self) {
  check_float_device(self, "self", "relu");
  DeviceGuard guard(self.device());
  at::Tensor out = at::empty_like(self);
  at::Tensor x = like(self, out);
  check_launch(deepops::relu_forward(dtype_of(x), x.const_data_ptr(), out.mutable_data_ptr(), x.numel(),
                                     current_stream()),
               "relu");
  return out;
}

void relu_(const at::Tensor& self) {
  check_float_device(self, "self", "relu_");
  DeviceGuard guard(self.device());
  if (self.is_non_overlapping_and_dense()) {
    check_launch(deepops::relu_forward(dtype_of(self), self.const_data_ptr(), self.mutable_data_ptr(),
                                       self.numel(), current_stream()),
                 "relu_");
  } else {
    self.copy_(relu(self));
  }
}

at::Tensor relu_backward(const at::Tensor& grad, const at::Tensor& result) {
  check_float_device(grad, "grad", "relu_backward");
  check_same(grad, result, "grad", "result", "relu_backward");
  DeviceGuard guard(result.device());
  at::Tensor out = at::empty_like(result);
  at::Tensor g = like(grad, out), r = like(result, out);
  check_launch(deepops::relu_backward(dtype_of(out), g.const_data_ptr(), r.const_data_ptr(), out.mutable_data_ptr(),
                                      out.numel(), current_stream()),
               "relu_backward");
  return out;
}

at::Tensor leaky_relu(const at::Tensor& self, double slope) {
  check_float_device(self, "self", "leaky_relu");
  DeviceGuard guard(self.device());
  at::Tensor out = at::empty_like(self);
  at::Tensor x = like(self, out);
  check_launch(deepops::leaky_relu_forward(dtype_of(x), x.const_data_ptr(), out.mutable_data_ptr(), x.numel(), slope,
                                           current_stream()),
               "leaky_relu");
  return out;
}

void leaky_relu_(const at::Tensor& self, double slope) {
  check_float_device(self, "self", "leaky_relu_");
  DeviceGuard guard(self.device());
  if (self.is_non_overlapping_and_dense()) {
    check_launch(deepops::leaky_relu_forward(dtype_of(self), self.const_data_ptr(), self.mutable_data_ptr(),
                                             self.numel(), slope, current_stream()),
                 "leaky_relu_");
  } else {
    self.copy_(leaky_relu(self, slope));
  }
}

at::Tensor leaky_relu_backward(const at::Tensor& grad, const at::Tensor& self, double slope) {
  check_float_device(grad, "grad", "leaky_relu_backward");
  check_same(grad, self, "grad", "self", "leaky_relu_backward");
  DeviceGuard guard(self.device());
  at::Tensor out = at::empty_like(self);
  at::Tensor g = like(grad, out), x = like(self, out);
  check_launch(deepops::leaky_relu_backward(dtype_of(out), g.const_data_ptr(), x.const_data_ptr(),
                                            out.mutable_data_ptr(), out.numel(), slope, current_stream()),
               "leaky_relu_backward");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(deepops, DEEPOPS_DISPATCH_KEY, m) {
  m.impl("relu", &relu);
  m.impl("relu_", &relu_);
  m.impl("relu_backward", &relu_backward);
  m.impl("leaky_relu", &leaky_relu);
  m.impl("leaky_relu_", &leaky_relu_);
  m.impl("leaky_relu_backward", &leaky_relu_backward);
}

}  // namespace deepops_torch
