// CUDA binding of conv2d, its three gradients and conv_transpose2d (schemas: deepops/ops/conv.py).
//
// Each op checks its arguments (messages "deepops.<op>: '<arg>' ..."), picks the memory layout by PyTorch's rule
// for convolutions (deepops/ops/conv.py, _conv_format): channels_last when EITHER of its two tensor operands
// suggests channels_last, else NCHW (the kernels' NHWC and NCHW are both native, so a dense tensor of either
// format is passed without a copy, any other strides are made dense in that format), makes the weight contiguous
// (KCRS), allocates the output in that format (the weight gradient too), takes a workspace
// from PyTorch's caching allocator as a byte tensor when the launcher asks for one, and launches on the current
// stream under a device guard.  float32 uses TF32 tensor cores only when torch.backends.cudnn.allow_tf32 is set
// (at::globalContext().allowTF32CuDNN()), as PyTorch's own cuDNN convolutions do.
//
// Empty problems never reach a kernel: N == 0 or K == 0 gives an empty output, an empty reduction (C == 0, an
// empty input plane whose windows all lie in the padding, N == 0 for the weight / bias gradients) gives zeros
// (plus the bias where there is one).
#include <ATen/Context.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "../kernels/conv.h"
#include "../kernels/shapes.h"
#include "common.h"

namespace deepops_torch {
namespace {

using deepops::ConvLayout;
using deepops::ConvPass;
using deepops::ConvShape;

struct Geometry {
  int64_t sh, sw, ph, pw, dh, dw;
};

void check_rank4(const at::Tensor& t, const char* arg, const char* op, const char* dims) {
  TORCH_CHECK_VALUE(t.dim() == 4, "deepops.", op, ": '", arg, "' must be 4-D ", dims, ", got shape ", t.sizes());
}

std::pair<int64_t, int64_t> pair_arg(at::IntArrayRef v, const char* arg, const char* op) {
  TORCH_CHECK_VALUE(v.size() == 2 || v.size() == 1, "deepops.", op, ": '", arg, "' must have 1 or 2 values, got ",
                    v.size());
  return v.size() == 1 ? std::make_pair(v[0], v[0]) : std::make_pair(v[0], v[1]);
}

Geometry geometry(at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, const char* op) {
  const auto [sh, sw] = pair_arg(stride, "stride", op);
  const auto [ph, pw] = pair_arg(padding, "padding", op);
  const auto [dh, dw] = pair_arg(dilation, "dilation", op);
  TORCH_CHECK_VALUE(sh > 0 && sw > 0, "deepops.", op, ": 'stride' must be positive, got ", stride);
  TORCH_CHECK_VALUE(ph >= 0 && pw >= 0, "deepops.", op, ": 'padding' must be non-negative, got ", padding);
  TORCH_CHECK_VALUE(dh > 0 && dw > 0, "deepops.", op, ": 'dilation' must be positive, got ", dilation);
  constexpr int64_t kMax = int64_t(1) << 29;
  TORCH_CHECK_VALUE(sh < kMax && sw < kMax && ph < kMax && pw < kMax && dh < kMax && dw < kMax, "deepops.", op,
                    ": 'stride', 'padding' and 'dilation' must be below 2^29");
  return {sh, sw, ph, pw, dh, dw};
}

std::vector<int64_t> concrete(c10::SymIntArrayRef v, const char* arg, const char* op) {
  TORCH_CHECK_VALUE(v.size() == 4, "deepops.", op, ": '", arg, "' must have 4 values, got ", v.size());
  std::vector<int64_t> out;
  for (const auto& s : v) out.push_back(s.guard_int(__FILE__, __LINE__));
  for (int64_t d : out) TORCH_CHECK_VALUE(d >= 0, "deepops.", op, ": '", arg, "' must be non-negative, got ", v);
  return out;
}

// PyTorch's rule (mkldnn_conv_use_channels_last / cudnn_conv_suggest_memory_format): channels_last when either
// operand suggests it.
ConvLayout layout_of(const at::Tensor& a, const at::Tensor& b) {
  const bool cl = a.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                  (b.dim() == 4 && b.suggest_memory_format() == at::MemoryFormat::ChannelsLast);
  return cl ? ConvLayout::kNHWC : ConvLayout::kNCHW;
}

at::MemoryFormat format_of(ConvLayout l) {
  return l == ConvLayout::kNHWC ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// Fills the sizes of s from x (N, C, H, W), the weight's (K, C/g, R, S) and the geometry; checks the channel
// relations and that the (dilated) kernel fits the padded input.
ConvShape make_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t wc, int64_t R, int64_t S,
                     const Geometry& g, int64_t groups, const char* op, const char* in_arg, const char* w_arg) {
  TORCH_CHECK_VALUE(groups > 0, "deepops.", op, ": 'groups' must be positive, got ", groups);
  TORCH_CHECK_VALUE(C % groups == 0, "deepops.", op, ": 'groups' (", groups, ") must divide the ", C,
                    " channels of '", in_arg, "'");
  TORCH_CHECK_VALUE(K % groups == 0, "deepops.", op, ": 'groups' (", groups, ") must divide the ", K,
                    " output channels of '", w_arg, "'");
  TORCH_CHECK_VALUE(wc * groups == C, "deepops.", op, ": '", w_arg, "' expects ", wc * groups, " input channels (",
                    wc, " per group x ", groups, " groups) but '", in_arg, "' has ", C);
  TORCH_CHECK_VALUE(R > 0 && S > 0, "deepops.", op, ": '", w_arg, "' must have a non-empty kernel, got ", R, "x", S);
  const int64_t eh = g.dh * (R - 1) + 1, ew = g.dw * (S - 1) + 1;
  TORCH_CHECK_VALUE(H + 2 * g.ph >= eh && W + 2 * g.pw >= ew, "deepops.", op, ": kernel size (", eh, "x", ew,
                    " with dilation) is larger than the padded input (", H + 2 * g.ph, "x", W + 2 * g.pw, ")");
  ConvShape s;
  s.N = N, s.C = C, s.H = H, s.W = W, s.K = K, s.R = R, s.S = S;
  s.P = deepops::conv_out_extent(H, R, g.sh, g.ph, g.dh);
  s.Q = deepops::conv_out_extent(W, S, g.sw, g.pw, g.dw);
  s.stride_h = int(g.sh), s.stride_w = int(g.sw), s.pad_h = int(g.ph), s.pad_w = int(g.pw);
  s.dil_h = int(g.dh), s.dil_w = int(g.dw), s.groups = int(groups);
  return s;
}

void check_supported(const ConvShape& s, const char* op) {
  const char* why = "";
  TORCH_CHECK_VALUE(deepops::conv_supported(s, &why), "deepops.", op, ": problem too large for the CUDA kernels: ",
                    why);
}

bool allow_tf32() { return at::globalContext().allowTF32CuDNN(); }

at::Tensor workspace(ConvPass pass, const ConvShape& s, ConvLayout l, DType dt, const at::Tensor& like) {
  const size_t bytes = deepops::conv2d_workspace_bytes(pass, dt, s, l, allow_tf32());
  if (bytes == 0) return at::Tensor();
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

void* ws_ptr(at::Tensor& ws) { return ws.defined() ? ws.mutable_data_ptr() : nullptr; }
size_t ws_size(const at::Tensor& ws) { return ws.defined() ? static_cast<size_t>(ws.numel()) : 0; }


void check_bias(const std::optional<at::Tensor>& bias, const at::Tensor& input, int64_t channels, const char* op) {
  if (!bias.has_value() || !bias->defined()) return;
  check_same(*bias, input, "bias", "input", op, /*shape=*/false);
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == channels, "deepops.", op, ": 'bias' must have shape (",
                    channels, ",), got ", bias->sizes());
}

// ------------------------------------------------------------------------------------------------ forward
at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const char* op = "conv2d";
  check_float_device(input, "input", op);
  check_same(weight, input, "weight", "input", op, /*shape=*/false);
  check_rank4(input, "input", op, "(N, C, H, W)");
  check_rank4(weight, "weight", op, "(C_out, C_in / groups, kH, kW)");
  const Geometry g = geometry(stride, padding, dilation, op);
  const ConvShape s = make_shape(input.size(0), input.size(1), input.size(2), input.size(3), weight.size(0),
                                 weight.size(1), weight.size(2), weight.size(3), g, groups, op, "input", "weight");
  check_bias(bias, input, s.K, op);
  const ConvLayout l = layout_of(input, weight);
  DeviceGuard guard(input.device());
  at::Tensor out = at::empty({s.N, s.K, s.P, s.Q}, input.options().memory_format(format_of(l)));
  const bool has_bias = bias.has_value() && bias->defined();
  if (out.numel() == 0) return out;
  if (s.C == 0 || s.H * s.W == 0) {  // an empty reduction, or every window in the padding
    out.zero_();
    if (has_bias) out.add_(bias->view({1, s.K, 1, 1}));
    return out;
  }
  check_supported(s, op);
  const at::Tensor x = input.contiguous(format_of(l)), w = weight.contiguous();
  const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
  const DType dt = dtype_of(x);
  at::Tensor ws = workspace(ConvPass::kForward, s, l, dt, x);
  check_launch(deepops::conv2d_forward(dt, s, l, x.const_data_ptr(), w.const_data_ptr(),
                                       has_bias ? b.const_data_ptr() : nullptr, out.mutable_data_ptr(), allow_tf32(),
                                       ws_ptr(ws), ws_size(ws), current_stream()),
               op);
  return out;
}

// ------------------------------------------------------------------------------------- backward-input core
// dx (N, C, H, W) from dy (N, K, P, Q) and w (K, C/g, R, S) (+ bias per channel of dx); op names the messages.
at::Tensor backward_input_core(const at::Tensor& dy, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               ConvShape s, const char* op, const char* dy_arg) {
  const ConvLayout l = layout_of(dy, weight);
  DeviceGuard guard(dy.device());
  at::Tensor dx = at::empty({s.N, s.C, s.H, s.W}, dy.options().memory_format(format_of(l)));
  const bool has_bias = bias.has_value() && bias->defined();
  if (dx.numel() == 0) return dx;
  if (s.K == 0 || s.P * s.Q == 0) {  // nothing to gather (an empty gradient plane: conv_transpose2d's empty output)
    dx.zero_();
    if (has_bias) dx.add_(bias->view({1, s.C, 1, 1}));
    return dx;
  }
  check_supported(s, op);
  const at::Tensor y = dy.contiguous(format_of(l)), w = weight.contiguous();
  const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
  const DType dt = dtype_of(y);
  at::Tensor ws = workspace(ConvPass::kBackwardInput, s, l, dt, y);
  check_launch(deepops::conv2d_backward_input(dt, s, l, y.const_data_ptr(), w.const_data_ptr(),
                                              has_bias ? b.const_data_ptr() : nullptr, dx.mutable_data_ptr(),
                                              allow_tf32(), ws_ptr(ws), ws_size(ws), current_stream()),
               op);
  (void)dy_arg;
  return dx;
}

at::Tensor conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight, c10::SymIntArrayRef input_size,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  const char* op = "conv2d_backward_input";
  check_float_device(grad_output, "grad_output", op);
  check_same(weight, grad_output, "weight", "grad_output", op, /*shape=*/false);
  check_rank4(grad_output, "grad_output", op, "(N, C_out, H_out, W_out)");
  check_rank4(weight, "weight", op, "(C_out, C_in / groups, kH, kW)");
  const auto in = concrete(input_size, "input_size", op);
  const Geometry g = geometry(stride, padding, dilation, op);
  const ConvShape s = make_shape(in[0], in[1], in[2], in[3], weight.size(0), weight.size(1), weight.size(2),
                                 weight.size(3), g, groups, op, "input_size", "weight");
  TORCH_CHECK_VALUE(grad_output.size(0) == s.N && grad_output.size(1) == s.K && grad_output.size(2) == s.P &&
                        grad_output.size(3) == s.Q,
                    "deepops.", op, ": 'grad_output' must have shape (", s.N, ", ", s.K, ", ", s.P, ", ", s.Q,
                    ") for this input size and weight, got ", grad_output.sizes());
  return backward_input_core(grad_output, weight, std::nullopt, s, op, "grad_output");
}

// ------------------------------------------------------------------------------------------ backward-weight
at::Tensor conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                  c10::SymIntArrayRef weight_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                  at::IntArrayRef dilation, int64_t groups) {
  const char* op = "conv2d_backward_weight";
  check_float_device(grad_output, "grad_output", op);
  check_same(input, grad_output, "input", "grad_output", op, /*shape=*/false);
  check_rank4(grad_output, "grad_output", op, "(N, C_out, H_out, W_out)");
  check_rank4(input, "input", op, "(N, C_in, H, W)");
  const auto ws_sz = concrete(weight_size, "weight_size", op);
  const Geometry g = geometry(stride, padding, dilation, op);
  ConvShape s = make_shape(input.size(0), input.size(1), input.size(2), input.size(3), ws_sz[0], ws_sz[1], ws_sz[2],
                           ws_sz[3], g, groups, op, "input", "weight_size");
  // The gradient of conv_transpose2d's weight comes through here with an input whose extent may exceed what P
  // implies (output_padding), so dy may be smaller than (P, Q): dy decides P and Q.
  TORCH_CHECK_VALUE(grad_output.size(0) == s.N && grad_output.size(1) == s.K && grad_output.size(2) <= s.P &&
                        grad_output.size(3) <= s.Q,
                    "deepops.", op, ": 'grad_output' must have shape (", s.N, ", ", s.K, ", ", s.P, ", ", s.Q,
                    ") for this input and weight size, got ", grad_output.sizes());
  s.P = grad_output.size(2), s.Q = grad_output.size(3);
  DeviceGuard guard(input.device());
  const ConvLayout l = layout_of(grad_output, input);
  const std::vector<int64_t> dw_size{s.K, ws_sz[1], s.R, s.S};
  if (s.K * ws_sz[1] == 0 || s.N == 0 || s.P == 0 || s.Q == 0 || s.H * s.W == 0)  // empty, or nothing to sum over
    return at::zeros(dw_size, input.options().memory_format(format_of(l)));
  check_supported(s, op);
  // the kernels write a KCRS weight gradient; a channels_last result is a copy of it (below)
  at::Tensor dw = at::empty(dw_size, input.options());
  const at::Tensor x = input.contiguous(format_of(l)), y = grad_output.contiguous(format_of(l));
  const DType dt = dtype_of(x);
  at::Tensor ws = workspace(ConvPass::kBackwardWeight, s, l, dt, x);
  check_launch(deepops::conv2d_backward_weight(dt, s, l, y.const_data_ptr(), x.const_data_ptr(), dw.mutable_data_ptr(),
                                               allow_tf32(), ws_ptr(ws), ws_size(ws), current_stream()),
               op);
  return dw.contiguous(format_of(l));
}

// -------------------------------------------------------------------------------------------- backward-bias
at::Tensor conv2d_backward_bias(const at::Tensor& grad_output) {
  const char* op = "conv2d_backward_bias";
  check_float_device(grad_output, "grad_output", op);
  check_rank4(grad_output, "grad_output", op, "(N, C_out, H_out, W_out)");
  DeviceGuard guard(grad_output.device());
  const int64_t N = grad_output.size(0), K = grad_output.size(1), P = grad_output.size(2), Q = grad_output.size(3);
  at::Tensor db = at::empty({K}, grad_output.options());
  if (K == 0) return db;
  if (N == 0 || P == 0 || Q == 0) return db.zero_();
  ConvShape s;  // the bias gradient only reads N, K, P, Q; the rest describes a 1x1 convolution of that size
  s.N = N, s.C = K, s.H = P, s.W = Q, s.K = K, s.R = 1, s.S = 1, s.P = P, s.Q = Q;
  check_supported(s, op);
  const ConvLayout l = layout_of(grad_output, grad_output);
  const at::Tensor y = grad_output.contiguous(format_of(l));
  const DType dt = dtype_of(y);
  at::Tensor ws = workspace(ConvPass::kBackwardBias, s, l, dt, y);
  check_launch(deepops::conv2d_backward_bias(dt, s, l, y.const_data_ptr(), db.mutable_data_ptr(), ws_ptr(ws),
                                             ws_size(ws), current_stream()),
               op);
  return db;
}

// ------------------------------------------------------------------------------------------ conv_transpose2d
// Its forward is conv2d's backward-input with the roles: conv's x = this output (N, C_out, H_out, W_out), conv's
// y = this input (N, C_in, H, W), conv's weight (K = C_in, C_out / groups, kH, kW) = this weight as given.
at::Tensor conv_transpose2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                            int64_t groups, at::IntArrayRef dilation) {
  const char* op = "conv_transpose2d";
  check_float_device(input, "input", op);
  check_same(weight, input, "weight", "input", op, /*shape=*/false);
  check_rank4(input, "input", op, "(N, C_in, H, W)");
  check_rank4(weight, "weight", op, "(C_in, C_out / groups, kH, kW)");
  const Geometry g = geometry(stride, padding, dilation, op);
  const auto [oph, opw] = pair_arg(output_padding, "output_padding", op);
  TORCH_CHECK_VALUE(oph >= 0 && opw >= 0, "deepops.", op, ": 'output_padding' must be non-negative, got ",
                    output_padding);
  TORCH_CHECK_VALUE((oph < g.sh || oph < g.dh) && (opw < g.sw || opw < g.dw), "deepops.", op,
                    ": 'output_padding' must be smaller than either stride or dilation, got ", output_padding);
  TORCH_CHECK_VALUE(groups > 0, "deepops.", op, ": 'groups' must be positive, got ", groups);
  const int64_t N = input.size(0), Cin = input.size(1), H = input.size(2), W = input.size(3);
  TORCH_CHECK_VALUE(Cin % groups == 0, "deepops.", op, ": 'groups' (", groups, ") must divide the ", Cin,
                    " channels of 'input'");
  TORCH_CHECK_VALUE(weight.size(0) == Cin, "deepops.", op, ": 'weight' must have ", Cin,
                    " rows (the input channels) in dimension 0, got shape ", weight.sizes());
  const int64_t R = weight.size(2), S = weight.size(3), Cout = weight.size(1) * groups;
  const int64_t Ho = deepops::conv_transpose_out_extent(H, R, g.sh, g.ph, oph, g.dh);
  const int64_t Wo = deepops::conv_transpose_out_extent(W, S, g.sw, g.pw, opw, g.dw);
  // an empty output plane is a result (PyTorch returns the empty tensor), a negative one an error
  TORCH_CHECK_VALUE(Ho >= 0 && Wo >= 0, "deepops.", op, ": the output size (", Ho, ", ", Wo, ") is negative: 'padding' (",
                    g.ph, ", ", g.pw, ") is too large for 'input' ", H, "x", W, " and kernel (", R, ", ", S, ")");
  ConvShape s = make_shape(N, Cout, Ho, Wo, Cin, weight.size(1), R, S, g, groups, op, "output", "weight");
  s.P = H, s.Q = W;  // the extent of dy (this input); output_padding may leave conv_out_extent(Ho) one larger
  check_bias(bias, input, Cout, op);
  return backward_input_core(input, weight, bias, s, op, "input");
}

}  // namespace

TORCH_LIBRARY_IMPL(deepops, DEEPOPS_DISPATCH_KEY, m) {
  m.impl("conv2d", &conv2d);
  m.impl("conv2d_backward_input", &conv2d_backward_input);
  m.impl("conv2d_backward_weight", &conv2d_backward_weight);
  m.impl("conv2d_backward_bias", &conv2d_backward_bias);
  m.impl("conv_transpose2d", &conv_transpose2d);
}

}  // namespace deepops_torch
