// Per-element arithmetic of the depthwise kernels of conv_direct.cu, host-callable so that tests_cpp/test_conv.cu
// can check it without a GPU, and the argument set-up the launchers use.  See conv_direct.cu for the strategy.
#pragma once

#include "arch/instructions.h"
#include "conv_common.cuh"
#include "device_utils.cuh"

namespace deepops {
namespace conv {

struct DirectArgs {
  DirectParams p;
  FastDivmod div_a;    // per-image element index -> NCHW (channel, pixel) with P*Q (H*W), NHWC (pixel, channel)
  FastDivmod div_row;  // pixel -> (row, column): Q (forward, weight gradient) or W (backward-input)
  FastDivmod div_mult, div_rs, div_s, div_sh, div_sw, div_pq;
  int per_image = 0;   // elements of one image of the elementwise kernel's output
};

inline DirectArgs direct_args(const DirectParams& p) {
  DirectArgs a;
  a.p = p;
  a.div_mult = FastDivmod(p.mult);
  a.div_rs = FastDivmod(static_cast<int64_t>(p.R) * p.S);
  a.div_s = FastDivmod(p.S);
  a.div_sh = FastDivmod(p.sh);
  a.div_sw = FastDivmod(p.sw);
  a.div_pq = FastDivmod(static_cast<int64_t>(p.P) * p.Q);
  a.div_row = FastDivmod(p.Q);
  return a;
}
// Forward: one element per output element of an image.
inline DirectArgs direct_fwd_args(const DirectParams& p) {
  DirectArgs a = direct_args(p);
  const int64_t pq = static_cast<int64_t>(p.P) * p.Q;
  a.per_image = static_cast<int>(pq * p.K);
  a.div_a = FastDivmod(p.nhwc ? p.K : pq);
  return a;
}
// Backward-input: one element per input element of an image.
inline DirectArgs direct_dgrad_args(const DirectParams& p) {
  DirectArgs a = direct_args(p);
  const int64_t hw = static_cast<int64_t>(p.H) * p.W;
  a.per_image = static_cast<int>(hw * p.C);
  a.div_a = FastDivmod(p.nhwc ? p.C : hw);
  a.div_row = FastDivmod(p.W);
  return a;
}

template <typename T> __host__ __device__ __forceinline__ typename Compute<T>::type dw_val(T v) { return v; }
template <> __host__ __device__ __forceinline__ float dw_val(__half v) { return __half2float(v); }
template <> __host__ __device__ __forceinline__ float dw_val(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __host__ __device__ __forceinline__ T dw_load(const T* q) { return arch::ldg(q); }

// Output element idx of image n of the depthwise forward: its value (with bias) and its offset in y.
template <typename T>
__host__ __device__ __forceinline__ typename Compute<T>::type dw_fwd_element(const DirectArgs& a, const T* __restrict__ x,
                                                                              const T* __restrict__ w,
                                                                              const T* __restrict__ bias, int n, int idx,
                                                                              long long& off) {
  using C = typename Compute<T>::type;
  const DirectParams& p = a.p;
  int k, pix, pp, q;
  if (p.nhwc) a.div_a.divmod(idx, pix, k);  // idx = pix * K + k
  else a.div_a.divmod(idx, k, pix);         // idx = k * P*Q + pix
  a.div_row.divmod(pix, pp, q);
  const int c = a.div_mult.div(k);
  const int hb = pp * p.sh - p.ph, wb = q * p.sw - p.pw;
  const T* wk = w + static_cast<long long>(k) * p.R * p.S;
  const T* xc = x + n * p.xN + c * p.xC;
  C acc = bias ? dw_val(bias[k]) : C(0);
  for (int r = 0; r < p.R; ++r) {
    const int h = hb + r * p.dh;
    if (static_cast<unsigned>(h) >= static_cast<unsigned>(p.H)) continue;
    for (int s = 0; s < p.S; ++s) {
      const int ww = wb + s * p.dw;
      if (static_cast<unsigned>(ww) >= static_cast<unsigned>(p.W)) continue;
      acc += dw_val(xc[h * p.xH + ww * p.xW]) * dw_val(dw_load(wk + r * p.S + s));
    }
  }
  off = n * p.yN + k * p.yC + pp * p.yH + q * p.yW;
  return acc;
}

// Input element idx of image n of the depthwise backward-input (+ bias of conv_transpose2d): value and offset.
template <typename T>
__host__ __device__ __forceinline__ typename Compute<T>::type dw_dgrad_element(const DirectArgs& a,
                                                                                const T* __restrict__ dy,
                                                                                const T* __restrict__ w,
                                                                                const T* __restrict__ bias, int n,
                                                                                int idx, long long& off) {
  using C = typename Compute<T>::type;
  const DirectParams& p = a.p;
  int c, pix, h, wi;
  if (p.nhwc) a.div_a.divmod(idx, pix, c);
  else a.div_a.divmod(idx, c, pix);
  a.div_row.divmod(pix, h, wi);
  C acc = bias ? dw_val(bias[c]) : C(0);
  for (int j = 0; j < p.mult; ++j) {
    const int k = c * p.mult + j;
    const T* dyk = dy + n * p.yN + k * p.yC;
    const T* wk = w + static_cast<long long>(k) * p.R * p.S;
    for (int r = 0; r < p.R; ++r) {
      const int hh = h + p.ph - r * p.dh;
      if (hh < 0) break;  // hh only decreases with r
      int pp, remh;
      a.div_sh.divmod(hh, pp, remh);
      if (remh != 0 || pp >= p.P) continue;
      for (int s = 0; s < p.S; ++s) {
        const int ww = wi + p.pw - s * p.dw;
        if (ww < 0) break;
        int q, remw;
        a.div_sw.divmod(ww, q, remw);
        if (remw != 0 || q >= p.Q) continue;
        acc += dw_val(dyk[pp * p.yH + q * p.yW]) * dw_val(dw_load(wk + r * p.S + s));
      }
    }
  }
  off = n * p.xN + c * p.xC + h * p.xH + wi * p.xW;
  return acc;
}

// Term of pixel i (of N*P*Q) in weight element e = (k, r, s) of the depthwise weight gradient.
template <typename T, typename A>
__host__ __device__ __forceinline__ A dw_wgrad_term(const DirectArgs& a, const T* __restrict__ dy,
                                                    const T* __restrict__ x, int e, int i) {
  const DirectParams& p = a.p;
  int k, rs, r, s;
  a.div_rs.divmod(e, k, rs);
  a.div_s.divmod(rs, r, s);
  const int c = a.div_mult.div(k);
  int n, pix, pp, q;
  a.div_pq.divmod(i, n, pix);
  a.div_row.divmod(pix, pp, q);
  const int h = pp * p.sh - p.ph + r * p.dh, ww = q * p.sw - p.pw + s * p.dw;
  if (static_cast<unsigned>(h) >= static_cast<unsigned>(p.H) || static_cast<unsigned>(ww) >= static_cast<unsigned>(p.W))
    return A(0);
  return static_cast<A>(dw_val(dy[n * p.yN + k * p.yC + pp * p.yH + q * p.yW])) *
         static_cast<A>(dw_val(x[n * p.xN + c * p.xC + h * p.xH + ww * p.xW]));
}

}  // namespace conv
}  // namespace deepops
