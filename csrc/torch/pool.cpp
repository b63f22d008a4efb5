// CUDA binding of max_pool2d_with_indices / max_pool2d / max_pool2d_backward: argument checks (the same rules and
// messages as deepops/ops/pool.py), output size, memory format, stream, launcher call.  Outputs (and the gradient)
// take the input's suggested memory format, channels_last or contiguous, as PyTorch's do; a 3-D input is pooled as
// a batch of one.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "../kernels/pool.h"
#include "../kernels/shapes.h"
#include "common.h"

namespace deepops_torch {
namespace {

struct Args {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
};

Args check_args(const at::Tensor& input, at::IntArrayRef k, at::IntArrayRef s, at::IntArrayRef p, at::IntArrayRef d,
                const char* op) {
  check_float_device(input, "input", op);
  const auto dim = input.dim();
  TORCH_CHECK_VALUE((dim == 3 || dim == 4) && input.size(-1) != 0 && input.size(-2) != 0 && input.size(-3) != 0,
                    "deepops.", op, ": 'input' must be (C, H, W) or (N, C, H, W) with non-zero C, H and W (N may be "
                    "0), got shape ", input.sizes());
  auto pair = [&](at::IntArrayRef v, const char* name) {
    TORCH_CHECK_VALUE(v.size() == 2, "deepops.", op, ": '", name, "' must have 2 values, got ", v);
  };
  pair(k, "kernel_size");
  pair(s, "stride");
  pair(p, "padding");
  pair(d, "dilation");
  TORCH_CHECK_VALUE(k[0] > 0 && k[1] > 0, "deepops.", op, ": 'kernel_size' must be positive, got ", k);
  TORCH_CHECK_VALUE(s[0] > 0 && s[1] > 0, "deepops.", op, ": 'stride' must be positive, got ", s);
  TORCH_CHECK_VALUE(d[0] > 0 && d[1] > 0, "deepops.", op, ": 'dilation' must be positive, got ", d);
  TORCH_CHECK_VALUE(p[0] >= 0 && p[1] >= 0, "deepops.", op, ": 'padding' must be non-negative, got ", p);
  TORCH_CHECK_VALUE(p[0] <= k[0] / 2 && p[1] <= k[1] / 2, "deepops.", op, ": 'padding' ", p,
                    " must be at most half of 'kernel_size' ", k);
  return {k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1]};
}

deepops::Pool2dShape shape_of(const at::Tensor& input4, const Args& a, bool ceil_mode, const char* op) {
  deepops::Pool2dShape sh{};
  sh.n = input4.size(0);
  sh.c = input4.size(1);
  sh.h = input4.size(2);
  sh.w = input4.size(3);
  sh.oh = deepops::pool_out_extent(sh.h, a.kh, a.sh, a.ph, a.dh, ceil_mode);
  sh.ow = deepops::pool_out_extent(sh.w, a.kw, a.sw, a.pw, a.dw, ceil_mode);
  TORCH_CHECK_VALUE(sh.oh >= 1 && sh.ow >= 1, "deepops.", op, ": output size is too small: 'input' of spatial size (",
                    sh.h, ", ", sh.w, ") gives (", sh.oh, ", ", sh.ow, ") with 'kernel_size' (", a.kh, ", ", a.kw,
                    ")");
  TORCH_CHECK_VALUE(sh.h < (int64_t(1) << 31) && sh.w < (int64_t(1) << 31), "deepops.", op,
                    ": 'input' height and width must be below 2^31");
  sh.kh = static_cast<int>(a.kh);
  sh.kw = static_cast<int>(a.kw);
  sh.sh = static_cast<int>(a.sh);
  sh.sw = static_cast<int>(a.sw);
  sh.ph = static_cast<int>(a.ph);
  sh.pw = static_cast<int>(a.pw);
  sh.dh = static_cast<int>(a.dh);
  sh.dw = static_cast<int>(a.dw);
  return sh;
}

std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& input, at::IntArrayRef k, at::IntArrayRef s,
                                           at::IntArrayRef p, at::IntArrayRef d, bool ceil_mode, bool with_ind,
                                           const char* op) {
  const Args a = check_args(input, k, s, p, d, op);
  DeviceGuard guard(input.device());
  const bool three = input.dim() == 3;
  const at::Tensor in4 = three ? input.unsqueeze(0) : input;
  const auto sh = shape_of(in4, a, ceil_mode, op);
  // a 3-D input is contiguous-format always (as in PyTorch), whatever its strides
  const auto fmt = three ? at::MemoryFormat::Contiguous : in4.suggest_memory_format();
  const bool cl = fmt == at::MemoryFormat::ChannelsLast;
  const at::Tensor x = in4.contiguous(fmt);
  at::Tensor out = at::empty({sh.n, sh.c, sh.oh, sh.ow}, input.options().memory_format(fmt));
  at::Tensor ind = at::empty({with_ind ? sh.n : 0, sh.c, sh.oh, sh.ow},
                             input.options().dtype(at::kLong).memory_format(fmt));
  check_launch(deepops::max_pool2d_forward(dtype_of(x), x.const_data_ptr(), out.mutable_data_ptr(),
                                           with_ind ? ind.mutable_data_ptr<int64_t>() : nullptr, sh, cl,
                                           current_stream()),
               op);
  if (three) {
    out = out.squeeze(0);
    ind = ind.squeeze(0);
  }
  return {out, ind};
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(const at::Tensor& input, at::IntArrayRef k,
                                                           at::IntArrayRef s, at::IntArrayRef p, at::IntArrayRef d,
                                                           bool ceil_mode) {
  return forward(input, k, s, p, d, ceil_mode, true, "max_pool2d");
}

at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef k, at::IntArrayRef s, at::IntArrayRef p,
                      at::IntArrayRef d, bool ceil_mode) {
  return std::get<0>(forward(input, k, s, p, d, ceil_mode, false, "max_pool2d"));
}

at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& indices,
                               at::IntArrayRef k, at::IntArrayRef s, at::IntArrayRef p, at::IntArrayRef d,
                               bool ceil_mode) {
  const char* op = "max_pool2d_backward";
  const Args a = check_args(input, k, s, p, d, op);
  DeviceGuard guard(input.device());
  const bool three = input.dim() == 3;
  const at::Tensor in4 = three ? input.unsqueeze(0) : input;
  const auto sh = shape_of(in4, a, ceil_mode, op);
  std::vector<int64_t> want(input.sizes().begin(), input.sizes().end() - 2);
  want.push_back(sh.oh);
  want.push_back(sh.ow);
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(want), "deepops.", op, ": 'grad_output' has shape ",
                    grad_output.sizes(), ", expected ", at::IntArrayRef(want));
  TORCH_CHECK_VALUE(indices.sizes() == at::IntArrayRef(want), "deepops.", op, ": 'indices' has shape ",
                    indices.sizes(), ", expected ", at::IntArrayRef(want));
  TORCH_CHECK(grad_output.device() == input.device() && indices.device() == input.device(), "deepops.", op,
              ": 'grad_output' and 'indices' must be on ", input.device());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == input.scalar_type(), "deepops.", op, ": 'grad_output' has dtype ",
                   py_dtype(grad_output.scalar_type()), " but 'input' has ", py_dtype(input.scalar_type()));
  TORCH_CHECK_TYPE(indices.scalar_type() == at::kLong, "deepops.", op, ": 'indices' must be int64, got ",
                   py_dtype(indices.scalar_type()));
  // a 3-D input is contiguous-format always (as in PyTorch), whatever its strides
  const auto fmt = three ? at::MemoryFormat::Contiguous : in4.suggest_memory_format();
  const bool cl = fmt == at::MemoryFormat::ChannelsLast;
  const at::Tensor g = (three ? grad_output.unsqueeze(0) : grad_output).contiguous(fmt);
  const at::Tensor ind = (three ? indices.unsqueeze(0) : indices).contiguous(fmt);
  at::Tensor gin = at::empty(in4.sizes(), input.options().memory_format(fmt));
  check_launch(deepops::max_pool2d_backward(dtype_of(g), g.const_data_ptr(), ind.const_data_ptr<int64_t>(),
                                            gin.mutable_data_ptr(), sh, cl, current_stream()),
               op);
  return three ? gin.squeeze(0) : gin;
}

}  // namespace

TORCH_LIBRARY_IMPL(deepops, DEEPOPS_DISPATCH_KEY, m) {
  m.impl("max_pool2d_with_indices", &max_pool2d_with_indices);
  m.impl("max_pool2d", &max_pool2d);
  m.impl("max_pool2d_backward", &max_pool2d_backward);
}

}  // namespace deepops_torch
