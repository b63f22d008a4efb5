// Direct (non-GEMM) convolution kernels: depthwise forward / backward-input / backward-weight, the bias gradient
// and the fixed-order reduction of split partial sums.
//
// Depthwise (C/groups == 1, K = C * mult; this also covers single-channel first layers, C == 1, groups == 1):
// an implicit GEMM would have a reduction of only R*S per output and waste its tiles, so these kernels are
// memory-bound direct loops instead.
// * forward: one thread per output element, threads in the output's memory order (so loads of x and stores of y
//   coalesce in NCHW and NHWC alike), R*S multiply-adds in the compute type, weight reads through the read-only
//   cache (each weight row is shared by a whole plane of threads).  grid.y walks the images, so the per-image index
//   stays 32-bit (decoded with multiply-shift division) while offsets are 64-bit.
// * backward-input: one thread per input element, gathering the dy elements whose windows cover it (stride
//   divisibility tested per (r, s)) over the mult output channels of its group, plus the bias of
//   conv_transpose2d.
// * backward-weight: one block per (weight element, split of the N*P*Q pixels), fixed-order tree reduction in
//   shared memory, partial sums to the workspace, then reduce_splits adds the splits in order.  Deterministic.
// Bias gradient: the same two passes over the channels (a block per channel in NCHW, where a channel's pixels are
// contiguous; a block per 32 channels x 8 pixel lanes in NHWC, where channels are contiguous).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "conv_common.cuh"
#include "device_utils.cuh"

namespace deepops {
namespace conv {
namespace {

constexpr int kDirectThreads = 256;   // elementwise depthwise kernels
constexpr int kDirectMinBlocks = 4;   // their launch-bounds occupancy hint (<= 64 registers; without it ptxas
                                      // squeezed the float16 backward-input kernel into 32 registers and spilled on sm_80)
constexpr int kReduceThreads = 256;   // per-block reductions (weight and bias gradients)
constexpr int kMaxGridY = 65535;
constexpr int64_t kSplitTargetBlocks = 1024;  // aim of direct_reduce_splits (shape-only, device independent)
constexpr int64_t kMinPixelsPerSplit = 2048;
constexpr int kMaxSplits = 256;

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

struct DirectArgs {
  DirectParams p;
  FastDivmod div_a, div_b;  // per-image element index -> (a, b-part): NCHW (channel, P*Q), NHWC (pixel, channels)
  FastDivmod div_row;       // pixel -> (row, column): Q (forward) or W (backward-input)
  FastDivmod div_mult, div_rs, div_s, div_sh, div_sw, div_pq;
  int per_image = 0;        // elements of one image of the kernel's output
};

// ---------------------------------------------------------------------------------------------- depthwise forward
template <typename T>
__global__ void __launch_bounds__(kDirectThreads, kDirectMinBlocks) depthwise_fwd_kernel(const DirectArgs a, const T* __restrict__ x,
                                                                       const T* __restrict__ w,
                                                                       const T* __restrict__ bias, T* __restrict__ y) {
  using C = typename Compute<T>::type;
  const DirectParams& p = a.p;
  const int idx = blockIdx.x * kDirectThreads + threadIdx.x;
  if (idx >= a.per_image) return;
  int k, pix, pp, q;
  if (p.nhwc) a.div_a.divmod(idx, pix, k);  // idx = pix * K + k
  else a.div_a.divmod(idx, k, pix);         // idx = k * P*Q + pix
  a.div_row.divmod(pix, pp, q);
  const int c = a.div_mult.div(k);
  const int hb = pp * p.sh - p.ph, wb = q * p.sw - p.pw;
  const T* wk = w + static_cast<long long>(k) * p.R * p.S;
  for (int n = blockIdx.y; n < p.N; n += gridDim.y) {
    const T* xc = x + n * p.xN + c * p.xC;
    C acc = bias ? to_compute(bias[k]) : C(0);
    for (int r = 0; r < p.R; ++r) {
      const int h = hb + r * p.dh;
      if (static_cast<unsigned>(h) >= static_cast<unsigned>(p.H)) continue;
      for (int s = 0; s < p.S; ++s) {
        const int ww = wb + s * p.dw;
        if (static_cast<unsigned>(ww) >= static_cast<unsigned>(p.W)) continue;
        acc += to_compute(xc[h * p.xH + ww * p.xW]) * to_compute(__ldg(wk + r * p.S + s));
      }
    }
    y[n * p.yN + k * p.yC + pp * p.yH + q * p.yW] = from_compute<T>(acc);
  }
}

// ---------------------------------------------------------------------------------------- depthwise backward-input
template <typename T>
__global__ void __launch_bounds__(kDirectThreads, kDirectMinBlocks) depthwise_dgrad_kernel(const DirectArgs a, const T* __restrict__ dy,
                                                                         const T* __restrict__ w,
                                                                         const T* __restrict__ bias,
                                                                         T* __restrict__ dx) {
  using C = typename Compute<T>::type;
  const DirectParams& p = a.p;
  const int idx = blockIdx.x * kDirectThreads + threadIdx.x;
  if (idx >= a.per_image) return;
  int c, pix, h, wi;
  if (p.nhwc) a.div_a.divmod(idx, pix, c);
  else a.div_a.divmod(idx, c, pix);
  a.div_row.divmod(pix, h, wi);
  for (int n = blockIdx.y; n < p.N; n += gridDim.y) {
    C acc = bias ? to_compute(bias[c]) : C(0);
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
          acc += to_compute(dyk[pp * p.yH + q * p.yW]) * to_compute(__ldg(wk + r * p.S + s));
        }
      }
    }
    dx[n * p.xN + c * p.xC + h * p.xH + wi * p.xW] = from_compute<T>(acc);
  }
}

// Fixed-order tree sum of one value per thread of a kReduceThreads block; the result is valid in thread 0.
template <typename A> __device__ __forceinline__ A block_sum(A v, A* sm) {
  sm[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sm[threadIdx.x] += sm[threadIdx.x + s];
    __syncthreads();
  }
  return sm[0];
}

// ---------------------------------------------------------------------------------------- depthwise backward-weight
// Block (e = (k, r, s), split): partial sum over its pixel range of dy[n, k, p, q] * x[n, c, h, w].
template <typename T>
__global__ void __launch_bounds__(kReduceThreads) depthwise_wgrad_kernel(const DirectArgs a, const T* __restrict__ dy,
                                                                         const T* __restrict__ x,
                                                                         typename AccOf<T>::type* __restrict__ ws,
                                                                         long long pixels, long long chunk) {
  using A = typename AccOf<T>::type;
  __shared__ A sm[kReduceThreads];
  const DirectParams& p = a.p;
  const int e = blockIdx.x, split = blockIdx.y;
  int k, rs, r, s;
  a.div_rs.divmod(e, k, rs);
  a.div_s.divmod(rs, r, s);
  const int c = a.div_mult.div(k);
  const long long begin = split * chunk, end = min(pixels, begin + chunk);
  A acc = 0;
  for (long long i = begin + threadIdx.x; i < end; i += kReduceThreads) {
    int n, pix, pp, q;
    a.div_pq.divmod(static_cast<int>(i), n, pix);
    a.div_row.divmod(pix, pp, q);
    const int h = pp * p.sh - p.ph + r * p.dh, ww = q * p.sw - p.pw + s * p.dw;
    if (static_cast<unsigned>(h) >= static_cast<unsigned>(p.H) || static_cast<unsigned>(ww) >= static_cast<unsigned>(p.W))
      continue;
    acc += static_cast<A>(to_compute(dy[n * p.yN + k * p.yC + pp * p.yH + q * p.yW])) *
           static_cast<A>(to_compute(x[n * p.xN + c * p.xC + h * p.xH + ww * p.xW]));
  }
  const A total = block_sum(acc, sm);
  if (threadIdx.x == 0) ws[static_cast<long long>(split) * gridDim.x + e] = total;
}

// ------------------------------------------------------------------------------------------------ bias gradient
// NCHW: block (k, split) sums channel k over its pixel range (pixel i = n * P*Q + pq, pq contiguous).
template <typename T>
__global__ void __launch_bounds__(kReduceThreads) bias_nchw_kernel(const DirectArgs a, const T* __restrict__ dy,
                                                                   typename AccOf<T>::type* __restrict__ ws,
                                                                   long long pixels, long long chunk) {
  using A = typename AccOf<T>::type;
  __shared__ A sm[kReduceThreads];
  const DirectParams& p = a.p;
  const int k = blockIdx.x, split = blockIdx.y;
  const long long begin = split * chunk, end = min(pixels, begin + chunk);
  A acc = 0;
  for (long long i = begin + threadIdx.x; i < end; i += kReduceThreads) {
    int n, pq;
    a.div_pq.divmod(static_cast<int>(i), n, pq);
    acc += static_cast<A>(to_compute(dy[n * p.yN + k * p.yC + pq]));
  }
  const A total = block_sum(acc, sm);
  if (threadIdx.x == 0) ws[static_cast<long long>(split) * p.K + k] = total;
}

// NHWC: block (32-channel slab, split); lane = channel, 8 pixel lanes, then a fixed-order sum of the 8 lanes.
constexpr int kBiasLanes = kReduceThreads / 32;
template <typename T>
__global__ void __launch_bounds__(kReduceThreads) bias_nhwc_kernel(const DirectArgs a, const T* __restrict__ dy,
                                                                   typename AccOf<T>::type* __restrict__ ws,
                                                                   long long pixels, long long chunk) {
  using A = typename AccOf<T>::type;
  __shared__ A sm[kBiasLanes][32];
  const DirectParams& p = a.p;
  const int lane = threadIdx.x % 32, row = threadIdx.x / 32;
  const int k = blockIdx.x * 32 + lane, split = blockIdx.y;
  const long long begin = split * chunk, end = min(pixels, begin + chunk);
  A acc = 0;
  if (k < p.K)
    for (long long i = begin + row; i < end; i += kBiasLanes) acc += static_cast<A>(to_compute(dy[i * p.K + k]));
  sm[row][lane] = acc;
  __syncthreads();
  if (row == 0 && k < p.K) {
    A total = sm[0][lane];
    for (int j = 1; j < kBiasLanes; ++j) total += sm[j][lane];
    ws[static_cast<long long>(split) * p.K + k] = total;
  }
}

template <typename T>
__global__ void __launch_bounds__(kDirectThreads) reduce_splits_kernel(const typename AccOf<T>::type* __restrict__ ws,
                                                                       int splits, long long n, T* __restrict__ out) {
  using A = typename AccOf<T>::type;
  for (long long i = blockIdx.x * static_cast<long long>(kDirectThreads) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * kDirectThreads) {
    A total = ws[i];
    for (int s = 1; s < splits; ++s) total += ws[s * n + i];
    out[i] = from_compute<T>(static_cast<typename Compute<T>::type>(total));
  }
}

DirectArgs make_args(const DirectParams& p) {
  DirectArgs a;
  a.p = p;
  a.div_mult = FastDivmod(p.mult);
  a.div_rs = FastDivmod(static_cast<int64_t>(p.R) * p.S);
  a.div_s = FastDivmod(p.S);
  a.div_sh = FastDivmod(p.sh);
  a.div_sw = FastDivmod(p.sw);
  a.div_pq = FastDivmod(static_cast<int64_t>(p.P) * p.Q);
  return a;
}

unsigned grid_y(int n) { return static_cast<unsigned>(std::max(1, std::min(n, kMaxGridY))); }

}  // namespace

int direct_reduce_splits(int64_t pixels, int64_t outputs) {
  int64_t s = std::max<int64_t>(1, kSplitTargetBlocks / std::max<int64_t>(1, outputs));
  s = std::min(s, std::max<int64_t>(1, pixels / kMinPixelsPerSplit));
  return static_cast<int>(std::min<int64_t>(s, kMaxSplits));
}

cudaError_t depthwise_forward(DType dt, const DirectParams& p, const void* x, const void* w, const void* bias,
                              void* y, cudaStream_t stream) {
  DirectArgs a = make_args(p);
  const int64_t pq = static_cast<int64_t>(p.P) * p.Q;
  a.per_image = static_cast<int>(pq * p.K);
  a.div_a = FastDivmod(p.nhwc ? p.K : pq);
  a.div_row = FastDivmod(p.Q);
  const dim3 grid((a.per_image + kDirectThreads - 1) / kDirectThreads, grid_y(p.N));
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    depthwise_fwd_kernel<T><<<grid, kDirectThreads, 0, stream>>>(a, static_cast<const T*>(x),
                                                                 static_cast<const T*>(w),
                                                                 static_cast<const T*>(bias), static_cast<T*>(y));
    return cudaGetLastError();
  });
}

cudaError_t depthwise_backward_input(DType dt, const DirectParams& p, const void* dy, const void* w,
                                     const void* bias, void* dx, cudaStream_t stream) {
  DirectArgs a = make_args(p);
  const int64_t hw = static_cast<int64_t>(p.H) * p.W;
  a.per_image = static_cast<int>(hw * p.C);
  a.div_a = FastDivmod(p.nhwc ? p.C : hw);
  a.div_row = FastDivmod(p.W);
  const dim3 grid((a.per_image + kDirectThreads - 1) / kDirectThreads, grid_y(p.N));
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    depthwise_dgrad_kernel<T><<<grid, kDirectThreads, 0, stream>>>(a, static_cast<const T*>(dy),
                                                                   static_cast<const T*>(w),
                                                                   static_cast<const T*>(bias), static_cast<T*>(dx));
    return cudaGetLastError();
  });
}

cudaError_t depthwise_backward_weight(DType dt, const DirectParams& p, const void* dy, const void* x, void* dw,
                                      void* ws, int splits, cudaStream_t stream) {
  DirectArgs a = make_args(p);
  a.div_row = FastDivmod(p.Q);
  const long long pixels = static_cast<long long>(p.N) * p.P * p.Q;
  const long long chunk = (pixels + splits - 1) / splits;
  const long long outputs = static_cast<long long>(p.K) * p.R * p.S;
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    depthwise_wgrad_kernel<T><<<dim3(static_cast<unsigned>(outputs), splits), kReduceThreads, 0, stream>>>(
        a, static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<A*>(ws), pixels, chunk);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    return reduce_splits(dt, ws, splits, outputs, dw, stream);
  });
}

cudaError_t bias_backward(DType dt, const DirectParams& p, const void* dy, void* db, void* ws, int splits,
                          cudaStream_t stream) {
  DirectArgs a = make_args(p);
  const long long pixels = static_cast<long long>(p.N) * p.P * p.Q;
  const long long chunk = (pixels + splits - 1) / splits;
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    if (p.nhwc)
      bias_nhwc_kernel<T><<<dim3((p.K + 31) / 32, splits), kReduceThreads, 0, stream>>>(
          a, static_cast<const T*>(dy), static_cast<A*>(ws), pixels, chunk);
    else
      bias_nchw_kernel<T><<<dim3(p.K, splits), kReduceThreads, 0, stream>>>(a, static_cast<const T*>(dy),
                                                                            static_cast<A*>(ws), pixels, chunk);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    return reduce_splits(dt, ws, splits, p.K, db, stream);
  });
}

cudaError_t reduce_splits(DType dt, const void* ws, int splits, int64_t n, void* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((n + kDirectThreads - 1) / kDirectThreads, 4096);
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    reduce_splits_kernel<T><<<static_cast<unsigned>(blocks), kDirectThreads, 0, stream>>>(
        static_cast<const A*>(ws), splits, n, static_cast<T*>(out));
    return cudaGetLastError();
  });
}

}  // namespace conv
}  // namespace deepops
