// 2-D max pooling launchers (PyTorch-free): forward (values and int64 flat per-plane indices, or values only) and
// the gather backward, for NCHW and channels_last (NHWC) buffers.  Semantics are PyTorch's (see pool.cu).
#pragma once

#include "common.h"

namespace deepops {

struct Pool2dShape {
  int64_t n, c, h, w;  // input (N, C, H, W); the buffer is NCHW- or NHWC-contiguous as channels_last says
  int64_t oh, ow;      // output spatial size (computed by the caller with PyTorch's formula)
  int kh, kw, sh, sw, ph, pw, dh, dw;
};

// Whether the launchers take the kernels' 32-bit index variant for this shape: every element offset and the last
// step of every grid-stride loop must fit in int32 (else the 64-bit variant).
bool max_pool2d_uses_32bit_indices(const Pool2dShape& s);

// y (and indices, unless it is nullptr) have the layout of x: (N, C, OH, OW) NCHW- or NHWC-contiguous.
cudaError_t max_pool2d_forward(DType dt, const void* x, void* y, int64_t* indices, const Pool2dShape& s,
                               bool channels_last, cudaStream_t stream);

// grad_input[e] = sum of grad_output over the windows whose index names e (a gather: no atomics, deterministic;
// the sum runs in increasing output position, in float for the 16-bit types).  Same layouts as the forward.
cudaError_t max_pool2d_backward(DType dt, const void* grad_output, const int64_t* indices, void* grad_input,
                                const Pool2dShape& s, bool channels_last, cudaStream_t stream);

}  // namespace deepops
