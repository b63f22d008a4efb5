// 2-D max pooling, forward and backward, NCHW and channels_last (NHWC).
//
// Semantics (PyTorch's): window (oh, ow) covers rows oh * sh - ph + a * dh (a < kh) and columns likewise; taps
// outside the input are skipped.  The scan goes row by row, column by column, and a tap replaces the running
// maximum when it is greater or NaN, so the first of equal maxima wins and the last NaN of a window wins.  The
// running maximum starts at -inf with the index of the first in-bounds tap.  Indices are flat per plane (ih * W +
// iw, int64).
//
// Strategy.  Pooling reads each input element about once (k^2 / s^2 times from L1/L2 where windows overlap) and
// writes each output once, so it is bound by memory bandwidth; the kernels are shaped for coalesced traffic:
//
// * NCHW forward: one thread per output element, consecutive threads on consecutive output columns of a row, so a
//   warp reads a contiguous stretch of input rows (overlapping windows are served by L1) and writes 32 consecutive
//   values and indices.  Grid-stride loop.
// * NHWC forward: one thread per (output pixel, kVec channels), with kVec = 16 / sizeof(T) when C is a multiple of
//   it and the buffers are 16-byte aligned: each tap is one 16-byte load, the values go out as one 16-byte store
//   and the kVec indices as consecutive int64 stores.  Otherwise kVec = 1 (still coalesced along C).
// * Backward is a gather, not a scatter: one thread per input element (NHWC: per kVec channels) visits the
//   windows that contain it (at most ceil(k / s) per dimension, found from the taps) in increasing (oh, ow) and
//   adds the gradient of those whose index names it.  Each input element is written once by one thread: no
//   atomics, no zero-fill pass, bitwise deterministic; the sum runs in float for the 16-bit types.
// * Index arithmetic is 32-bit when every buffer and its grid-stride loop stay below 2^31 (fits32), 64-bit
//   otherwise (huge tensors).
#include <algorithm>
#include <cstdint>

#include "device_utils.cuh"
#include "pool.h"

namespace deepops {
namespace {

constexpr int kPoolThreads = 256;  // threads per block
constexpr int kPoolWaves = 16;     // grid size cap, in blocks per SM (grid-stride beyond)
// Resident blocks per SM asked of the vector (NHWC) kernels: 4 x 256 threads leaves them 64 registers, enough for
// kVec running maxima and indices; with the bare thread bound, ptxas aims at full occupancy (32 registers) and
// spills.
constexpr int kPoolMinBlocksVec = 4;

__device__ __forceinline__ int first_tap(int start, int step) {
  return start >= 0 ? start : start + ((-start + step - 1) / step) * step;
}

template <typename C> __device__ __forceinline__ C neg_inf() { return -INFINITY; }
template <> __device__ __forceinline__ double neg_inf<double>() { return -static_cast<double>(INFINITY); }

// ------------------------------------------------------------------------------------------------ NCHW forward

template <typename T, typename I, bool kIdx>
__global__ void __launch_bounds__(kPoolThreads)
    fwd_nchw(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ ind, Pool2dShape s, I total) {
  using C = typename Compute<T>::type;
  const I OW = static_cast<I>(s.ow), OH = static_cast<I>(s.oh);
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w);
  for (I i = static_cast<I>(blockIdx.x) * kPoolThreads + threadIdx.x; i < total;
       i += static_cast<I>(gridDim.x) * kPoolThreads) {
    const I ow = i % OW;
    const I t = i / OW;
    const I oh = t % OH;
    const I plane = t / OH;
    const T* xp = x + plane * (static_cast<I>(H) * W);
    const int h0 = static_cast<int>(oh) * s.sh - s.ph;
    const int w0 = static_cast<int>(ow) * s.sw - s.pw;
    const int hs = first_tap(h0, s.dh), ws = first_tap(w0, s.dw);
    const int he = min(h0 + (s.kh - 1) * s.dh + 1, H), we = min(w0 + (s.kw - 1) * s.dw + 1, W);
    C m = neg_inf<C>();
    I mi = static_cast<I>(hs) * W + ws;
    for (int ih = hs; ih < he; ih += s.dh) {
      const T* row = xp + static_cast<I>(ih) * W;
      for (int iw = ws; iw < we; iw += s.dw) {
        const C v = to_compute(row[iw]);
        if (v > m || v != v) {
          m = v;
          mi = static_cast<I>(ih) * W + iw;
        }
      }
    }
    y[i] = from_compute<T>(m);
    if (kIdx) ind[i] = static_cast<int64_t>(mi);
  }
}

// ------------------------------------------------------------------------------------------------ NHWC forward

template <typename T, typename I, int V, bool kIdx>
__global__ void __launch_bounds__(kPoolThreads, kPoolMinBlocksVec)
    fwd_nhwc(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ ind, Pool2dShape s, I total) {
  using C = typename Compute<T>::type;
  using VT = Vec<T, V>;
  const I CV = static_cast<I>(s.c / V), CH = static_cast<I>(s.c);
  const I OW = static_cast<I>(s.ow), OH = static_cast<I>(s.oh);
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w);
  for (I i = static_cast<I>(blockIdx.x) * kPoolThreads + threadIdx.x; i < total;
       i += static_cast<I>(gridDim.x) * kPoolThreads) {
    const I c = (i % CV) * V;
    I t = i / CV;
    const I ow = t % OW;
    t /= OW;
    const I oh = t % OH;
    const I n = t / OH;
    const int h0 = static_cast<int>(oh) * s.sh - s.ph;
    const int w0 = static_cast<int>(ow) * s.sw - s.pw;
    const int hs = first_tap(h0, s.dh), ws = first_tap(w0, s.dw);
    const int he = min(h0 + (s.kh - 1) * s.dh + 1, H), we = min(w0 + (s.kw - 1) * s.dw + 1, W);
    C m[V];
    I mi[V];
#pragma unroll
    for (int k = 0; k < V; ++k) {
      m[k] = neg_inf<C>();
      mi[k] = static_cast<I>(hs) * W + ws;
    }
    const T* xn = x + n * (static_cast<I>(H) * W * CH) + c;
    for (int ih = hs; ih < he; ih += s.dh) {
      for (int iw = ws; iw < we; iw += s.dw) {
        const I flat = static_cast<I>(ih) * W + iw;
        const VT v = *reinterpret_cast<const VT*>(xn + flat * CH);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const C e = to_compute(v.v[k]);
          const bool take = e > m[k] || e != e;
          m[k] = take ? e : m[k];
          mi[k] = take ? flat : mi[k];
        }
      }
    }
    const I o = ((n * OH + oh) * OW + ow) * CH + c;
    VT out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = from_compute<T>(m[k]);
    *reinterpret_cast<VT*>(y + o) = out;
    if (kIdx) {
#pragma unroll
      for (int k = 0; k < V; ++k) ind[o + k] = static_cast<int64_t>(mi[k]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------- backward

// The outputs along one dimension whose window contains input position i: o = (i + p - a * d) / s for the taps a
// that divide evenly, visited with a decreasing (o increasing).
template <typename T, typename I>
__global__ void __launch_bounds__(kPoolThreads)
    bwd_nchw(const T* __restrict__ g, const int64_t* __restrict__ ind, T* __restrict__ gin, Pool2dShape s, I total) {
  using C = typename Compute<T>::type;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w);
  const int OH = static_cast<int>(s.oh), OW = static_cast<int>(s.ow);
  for (I i = static_cast<I>(blockIdx.x) * kPoolThreads + threadIdx.x; i < total;
       i += static_cast<I>(gridDim.x) * kPoolThreads) {
    const int iw = static_cast<int>(i % W);
    const I t = i / W;
    const int ih = static_cast<int>(t % H);
    const I plane = t / H;
    const I off = plane * (static_cast<I>(OH) * OW);
    const int64_t flat = static_cast<int64_t>(ih) * W + iw;
    C acc = C(0);
    for (int a = s.kh - 1; a >= 0; --a) {
      const int th = ih + s.ph - a * s.dh;
      if (th < 0 || th % s.sh != 0) continue;
      const int oh = th / s.sh;
      if (oh >= OH) continue;
      for (int b = s.kw - 1; b >= 0; --b) {
        const int tw = iw + s.pw - b * s.dw;
        if (tw < 0 || tw % s.sw != 0) continue;
        const int ow = tw / s.sw;
        if (ow >= OW) continue;
        const I o = off + static_cast<I>(oh) * OW + ow;
        if (ind[o] == flat) acc += to_compute(g[o]);
      }
    }
    gin[i] = from_compute<T>(acc);
  }
}

template <typename T, typename I, int V>
__global__ void __launch_bounds__(kPoolThreads, kPoolMinBlocksVec)
    bwd_nhwc(const T* __restrict__ g, const int64_t* __restrict__ ind, T* __restrict__ gin, Pool2dShape s, I total) {
  using C = typename Compute<T>::type;
  using VT = Vec<T, V>;
  const I CV = static_cast<I>(s.c / V), CH = static_cast<I>(s.c);
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w);
  const int OH = static_cast<int>(s.oh), OW = static_cast<int>(s.ow);
  for (I i = static_cast<I>(blockIdx.x) * kPoolThreads + threadIdx.x; i < total;
       i += static_cast<I>(gridDim.x) * kPoolThreads) {
    const I c = (i % CV) * V;
    I t = i / CV;
    const int iw = static_cast<int>(t % W);
    t /= W;
    const int ih = static_cast<int>(t % H);
    const I n = t / H;
    const int64_t flat = static_cast<int64_t>(ih) * W + iw;
    C acc[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = C(0);
    const I base = n * (static_cast<I>(OH) * OW * CH) + c;
    for (int a = s.kh - 1; a >= 0; --a) {
      const int th = ih + s.ph - a * s.dh;
      if (th < 0 || th % s.sh != 0) continue;
      const int oh = th / s.sh;
      if (oh >= OH) continue;
      for (int b = s.kw - 1; b >= 0; --b) {
        const int tw = iw + s.pw - b * s.dw;
        if (tw < 0 || tw % s.sw != 0) continue;
        const int ow = tw / s.sw;
        if (ow >= OW) continue;
        const I o = base + (static_cast<I>(oh) * OW + ow) * CH;
        const VT gv = *reinterpret_cast<const VT*>(g + o);
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] += ind[o + k] == flat ? to_compute(gv.v[k]) : C(0);
      }
    }
    VT out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = from_compute<T>(acc[k]);
    *reinterpret_cast<VT*>(gin + n * (static_cast<I>(H) * W * CH) + (static_cast<I>(ih) * W + iw) * CH + c) = out;
  }
}

// ------------------------------------------------------------------------------------------------------ launch

inline unsigned pool_blocks(int64_t work) { return arch::grid_1d(work, kPoolThreads, 1, kPoolWaves); }

// 32-bit index math is safe when every element offset fits AND a grid-stride loop's last step does: a thread at
// i < total computes i + stride before it leaves, so total + stride must stay below 2^31 (stride is at most
// kPoolWaves blocks per SM of kPoolThreads threads; about 540k on an H100).
inline bool fits32(const Pool2dShape& s) {
  const int64_t max_stride = static_cast<int64_t>(arch::sm_count()) * kPoolWaves * kPoolThreads;
  const int64_t largest = std::max(s.n * s.c * s.h * s.w, s.n * s.c * s.oh * s.ow);
  return largest + max_stride <= INT32_MAX && !arch::force_64bit_indices();
}

template <typename T, typename I>
cudaError_t forward_typed(const void* xv, void* yv, int64_t* ind, const Pool2dShape& s, bool cl, cudaStream_t st) {
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  const int64_t nout = s.n * s.c * s.oh * s.ow;
  if (cl) {
    constexpr int V = 16 / sizeof(T);
    const bool vec = s.c % V == 0 && aligned16(x) && aligned16(y) && (ind == nullptr || aligned16(ind));
    if (vec) {
      const I work = static_cast<I>(nout / V);
      if (ind) return arch::launch<fwd_nhwc<T, I, V, true>>(pool_blocks(work), kPoolThreads, 0, st, x, y, ind, s, work);
      else return arch::launch<fwd_nhwc<T, I, V, false>>(pool_blocks(work), kPoolThreads, 0, st, x, y, ind, s, work);
    } else {
      const I work = static_cast<I>(nout);
      if (ind) return arch::launch<fwd_nhwc<T, I, 1, true>>(pool_blocks(work), kPoolThreads, 0, st, x, y, ind, s, work);
      else return arch::launch<fwd_nhwc<T, I, 1, false>>(pool_blocks(work), kPoolThreads, 0, st, x, y, ind, s, work);
    }
  } else {
    const I work = static_cast<I>(nout);
    if (ind) return arch::launch<fwd_nchw<T, I, true>>(pool_blocks(work), kPoolThreads, 0, st, x, y, ind, s, work);
    else return arch::launch<fwd_nchw<T, I, false>>(pool_blocks(work), kPoolThreads, 0, st, x, y, ind, s, work);
  }
}

template <typename T, typename I>
cudaError_t backward_typed(const void* gv, const int64_t* ind, void* giv, const Pool2dShape& s, bool cl,
                           cudaStream_t st) {
  const T* g = static_cast<const T*>(gv);
  T* gin = static_cast<T*>(giv);
  const int64_t nin = s.n * s.c * s.h * s.w;
  if (cl) {
    constexpr int V = 16 / sizeof(T);
    if (s.c % V == 0 && aligned16(g) && aligned16(gin)) {
      const I work = static_cast<I>(nin / V);
      return arch::launch<bwd_nhwc<T, I, V>>(pool_blocks(work), kPoolThreads, 0, st, g, ind, gin, s, work);
    } else {
      const I work = static_cast<I>(nin);
      return arch::launch<bwd_nhwc<T, I, 1>>(pool_blocks(work), kPoolThreads, 0, st, g, ind, gin, s, work);
    }
  } else {
    const I work = static_cast<I>(nin);
    return arch::launch<bwd_nchw<T, I>>(pool_blocks(work), kPoolThreads, 0, st, g, ind, gin, s, work);
  }
}

}  // namespace

bool max_pool2d_uses_32bit_indices(const Pool2dShape& s) { return fits32(s); }

cudaError_t max_pool2d_forward(DType dt, const void* x, void* y, int64_t* indices, const Pool2dShape& s,
                               bool channels_last, cudaStream_t stream) {
  if (s.n * s.c * s.oh * s.ow == 0) return cudaSuccess;
  const bool small = fits32(s);
  return dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    return small ? forward_typed<T, int32_t>(x, y, indices, s, channels_last, stream)
                 : forward_typed<T, int64_t>(x, y, indices, s, channels_last, stream);
  });
}

cudaError_t max_pool2d_backward(DType dt, const void* grad_output, const int64_t* indices, void* grad_input,
                                const Pool2dShape& s, bool channels_last, cudaStream_t stream) {
  if (s.n * s.c * s.h * s.w == 0) return cudaSuccess;
  const bool small = fits32(s);
  return dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    return small ? backward_typed<T, int32_t>(grad_output, indices, grad_input, s, channels_last, stream)
                 : backward_typed<T, int64_t>(grad_output, indices, grad_input, s, channels_last, stream);
  });
}

}  // namespace deepops
