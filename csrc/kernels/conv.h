// 2-D convolution launchers (PyTorch-free): forward, backward-input (= the forward of conv_transpose2d),
// backward-weight (deterministic) and backward-bias.  Semantics: torch.nn.functional.conv2d and its gradients, with
// symmetric zero padding, dilation and groups.  Design and path selection: conv.cu and docs/conv_cuda.md.
//
// Tensors (all dense, device memory, dtype dt):
//   x  (input)        N x C x H x W   in `layout`        dx has the same shape and layout
//   y  (output)       N x K x P x Q   in `layout`        dy has the same shape and layout
//   w  (weight)       K x C/groups x R x S, contiguous (KCRS) whatever the layout; dw is written the same way
//   bias              K elements (forward), or C elements for the forward of conv_transpose2d (bwd_input)
// kNCHW: element (n, c, h, w) at ((n*C + c)*H + h)*W + w;  kNHWC (channels_last): at ((n*H + h)*W + w)*C + c.
// Both layouts are native to the element-gather kernels; the 16-byte vector path transposes an NCHW input to NHWC
// in its workspace (as cuDNN does).  Offsets are 64-bit, so a tensor may exceed 2^31
// elements, but N*P*Q and N*H*W (pixels) must stay below 2^31 (conv_supported() says so).
//
// float32 runs on FFMA unless allow_tf32 (then TF32 tensor cores, 10-bit mantissa, as cuDNN with
// torch.backends.cudnn.allow_tf32); float64 on DFMA; float16 / bfloat16 on tensor cores with float32 accumulation
// (those need compute capability >= 8.0: cudaErrorNotSupported below that).
//
// Workspace: ask conv2d_workspace_bytes(pass, ...) and hand in a device buffer of at least that many bytes
// (256-byte aligned); nullptr / 0 when it says 0.  Every launcher launches on `stream`, never synchronises and returns
// the first launch error (cudaErrorInvalidValue for a shape it does not take).  Empty problems (N == 0, K == 0,
// C == 0) are the caller's: the binding answers them without a launch.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common.h"

namespace deepops {

enum class ConvLayout : int { kNCHW = 0, kNHWC = 1 };

enum class ConvPass : int { kForward = 0, kBackwardInput = 1, kBackwardWeight = 2, kBackwardBias = 3 };

struct ConvShape {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input: batch, channels (all groups), height, width
  int64_t K = 0;                       // output channels (all groups)
  int64_t R = 0, S = 0;                // kernel height, width
  int64_t P = 0, Q = 0;                // output height, width: (H + 2 pad_h - dil_h (R - 1) - 1) / stride_h + 1
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int groups = 1;
};

// True when the launchers take this shape (sizes positive and consistent, P and Q as above, pixel counts and the
// per-group GEMM sizes below 2^31).  When false, *why (if given) names the reason.
bool conv_supported(const ConvShape& s, const char** why = nullptr);

// Bytes of workspace the launcher of `pass` needs for this problem: forward / backward-input for the 16-byte vector
// path (float16 / bfloat16, or float32 with allow_tf32, when the reduction's channel count C/g (forward) or K/g
// (backward-input) is a multiple of 8 (4 for TF32): the weight transposed, plus the NCHW input transposed to NHWC),
// backward-weight for split-K partial sums, backward-bias for its two passes.  A forward / backward-input given less
// than asked runs the element-gather path instead.  Pass the same allow_tf32 as to the launcher.
size_t conv2d_workspace_bytes(ConvPass pass, DType dt, const ConvShape& s, ConvLayout layout, bool allow_tf32 = false);

// y = conv2d(x, w) + bias (bias may be nullptr).
cudaError_t conv2d_forward(DType dt, const ConvShape& s, ConvLayout layout, const void* x, const void* w,
                           const void* bias, void* y, bool allow_tf32, void* workspace, size_t workspace_bytes,
                           cudaStream_t stream);

// dx = gradient of conv2d's input for output gradient dy (every element of dx written).  With bias (C elements, or
// nullptr) added per channel of dx, this is also conv_transpose2d's forward: its input is dy (N x K x P x Q), its
// weight w viewed as (K, C/groups, R, S), its output dx; output_padding only enlarges H, W.
cudaError_t conv2d_backward_input(DType dt, const ConvShape& s, ConvLayout layout, const void* dy, const void* w,
                                  const void* bias, void* dx, bool allow_tf32, void* workspace,
                                  size_t workspace_bytes, cudaStream_t stream);

// dw = gradient of conv2d's weight (K x C/groups x R x S, contiguous), bitwise reproducible run to run: split-K
// partial sums go to the workspace and are added in a fixed order (no atomics).
cudaError_t conv2d_backward_weight(DType dt, const ConvShape& s, ConvLayout layout, const void* dy, const void* x,
                                   void* dw, bool allow_tf32, void* workspace, size_t workspace_bytes,
                                   cudaStream_t stream);

// db (K elements) = dy summed over N, P, Q; deterministic (fixed-order two-pass reduction through the workspace).
cudaError_t conv2d_backward_bias(DType dt, const ConvShape& s, ConvLayout layout, const void* dy, void* db,
                                 void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace deepops
