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
// Batched transposition (NCHW -> NHWC, and the weight layouts of the vector implicit GEMM's operands).
// Bias gradient: the same two passes over the channels (a block per channel in NCHW, where a channel's pixels are
// contiguous; a block per 32 channels x 8 pixel lanes in NHWC, where channels are contiguous).
#include <algorithm>

#include "arch/launch.h"
#include "arch/sync.h"
#include "conv_common.cuh"
#include "conv_direct.cuh"
#include "device_utils.cuh"

namespace deepops {
namespace conv {
namespace {

constexpr int kDirectThreads = 256;   // elementwise depthwise kernels
constexpr int kDirectMinBlocks = 4;   // their launch-bounds occupancy hint (<= 64 registers; without it ptxas
                                      // squeezed the float16 backward-input kernel into 32 registers and spilled on sm_80)
constexpr int kReduceThreads = 256;   // per-block reductions (weight and bias gradients)
constexpr int64_t kSplitTargetBlocks = 1024;  // aim of direct_reduce_splits (shape-only, device independent)
constexpr int64_t kMinPixelsPerSplit = 2048;
constexpr int kMaxSplits = 256;
constexpr int64_t kMaxGridStrideBlocks = 4096;  // grid cap of the grid-stride kernels (reduce; x4 for transposes)

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

// ---------------------------------------------------------------------------------------------- depthwise forward
template <typename T>
__global__ void __launch_bounds__(kDirectThreads, kDirectMinBlocks)
    depthwise_fwd_kernel(const DirectArgs a, const T* __restrict__ x, const T* __restrict__ w,
                         const T* __restrict__ bias, T* __restrict__ y) {
  const int idx = blockIdx.x * kDirectThreads + threadIdx.x;
  if (idx >= a.per_image) return;
  for (int n = blockIdx.y; n < a.p.N; n += gridDim.y) {
    long long off;
    const auto v = dw_fwd_element<T>(a, x, w, bias, n, idx, off);
    y[off] = from_compute<T>(v);
  }
}

// ---------------------------------------------------------------------------------------- depthwise backward-input
template <typename T>
__global__ void __launch_bounds__(kDirectThreads, kDirectMinBlocks)
    depthwise_dgrad_kernel(const DirectArgs a, const T* __restrict__ dy, const T* __restrict__ w,
                           const T* __restrict__ bias, T* __restrict__ dx) {
  const int idx = blockIdx.x * kDirectThreads + threadIdx.x;
  if (idx >= a.per_image) return;
  for (int n = blockIdx.y; n < a.p.N; n += gridDim.y) {
    long long off;
    const auto v = dw_dgrad_element<T>(a, dy, w, bias, n, idx, off);
    dx[off] = from_compute<T>(v);
  }
}

// Fixed-order tree sum of one value per thread of a kReduceThreads block; the result is valid in thread 0.
template <typename A> __device__ __forceinline__ A block_sum(A v, A* sm) {
  sm[threadIdx.x] = v;
  arch::sync_threads();
#pragma unroll
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) sm[threadIdx.x] += sm[threadIdx.x + s];
    arch::sync_threads();
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
  const int e = blockIdx.x, split = blockIdx.y;
  const long long begin = split * chunk, end = min(pixels, begin + chunk);
  A acc = 0;
  for (long long i = begin + threadIdx.x; i < end; i += kReduceThreads)
    acc += dw_wgrad_term<T, A>(a, dy, x, e, static_cast<int>(i));
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
  arch::sync_threads();
  if (row == 0 && k < p.K) {
    A total = sm[0][lane];
    for (int j = 1; j < kBiasLanes; ++j) total += sm[j][lane];
    ws[static_cast<long long>(split) * p.K + k] = total;
  }
}

template <typename T>
__global__ void __launch_bounds__(kDirectThreads) reduce_splits_kernel(const typename AccOf<T>::type* __restrict__ ws,
                                                                       int splits, long long n, T* __restrict__ out,
                                                                       const T* __restrict__ bias, long long channels,
                                                                       long long inner) {
  using A = typename AccOf<T>::type;
  for (long long i = blockIdx.x * static_cast<long long>(kDirectThreads) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * kDirectThreads) {
    A total = ws[i];
    for (int s = 1; s < splits; ++s) total += ws[s * n + i];
    if (bias) total += static_cast<A>(to_compute(bias[(i / inner) % channels]));
    out[i] = from_compute<T>(static_cast<typename Compute<T>::type>(total));
  }
}

// out[b][j][i] = in[b][i][j]: a grid-stride loop over 32 x 32 tiles (tile t = (b, ti, tj), tj fastest), read along
// J and written along I through a padded shared tile (conflict-free both ways).
constexpr int kTransTile = 32, kTransThreads = 256;
template <typename T>
__global__ void __launch_bounds__(kTransThreads) transpose_kernel(const T* __restrict__ in, T* __restrict__ out,
                                                                  long long I, long long J, long long tiles_i,
                                                                  long long tiles_j, long long tiles) {
  __shared__ T tile[kTransTile][kTransTile + 1];
  const int tx = threadIdx.x % kTransTile, ty = threadIdx.x / kTransTile;
  constexpr int kRowsPerPass = kTransThreads / kTransTile;
  for (long long t = blockIdx.x; t < tiles; t += gridDim.x) {
    const long long b = t / (tiles_i * tiles_j), rem = t % (tiles_i * tiles_j);
    const long long i0 = rem / tiles_j * kTransTile, j0 = rem % tiles_j * kTransTile;
    const T* src = in + b * I * J;
    T* dst = out + b * I * J;
    for (int r = ty; r < kTransTile; r += kRowsPerPass)
      if (i0 + r < I && j0 + tx < J) tile[r][tx] = src[(i0 + r) * J + j0 + tx];
    arch::sync_threads();
    for (int r = ty; r < kTransTile; r += kRowsPerPass)
      if (j0 + r < J && i0 + tx < I) dst[(j0 + r) * I + i0 + tx] = tile[tx][r];
    arch::sync_threads();
  }
}

unsigned grid_y(int n) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(n, arch::kMaxGridYZ))); }

}  // namespace

int direct_reduce_splits(int64_t pixels, int64_t outputs) {
  int64_t s = std::max<int64_t>(1, kSplitTargetBlocks / std::max<int64_t>(1, outputs));
  s = std::min(s, std::max<int64_t>(1, pixels / kMinPixelsPerSplit));
  return static_cast<int>(std::min<int64_t>(s, kMaxSplits));
}

cudaError_t depthwise_forward(DType dt, const DirectParams& p, const void* x, const void* w, const void* bias,
                              void* y, cudaStream_t stream) {
  const DirectArgs a = direct_fwd_args(p);
  const dim3 grid(arch::grid_1d(a.per_image, kDirectThreads), grid_y(p.N));
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    return arch::launch<depthwise_fwd_kernel<T>>(grid, kDirectThreads, 0, stream, a, static_cast<const T*>(x),
                                                 static_cast<const T*>(w), static_cast<const T*>(bias),
                                                 static_cast<T*>(y));
  });
}

cudaError_t depthwise_backward_input(DType dt, const DirectParams& p, const void* dy, const void* w,
                                     const void* bias, void* dx, cudaStream_t stream) {
  const DirectArgs a = direct_dgrad_args(p);
  const dim3 grid(arch::grid_1d(a.per_image, kDirectThreads), grid_y(p.N));
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    return arch::launch<depthwise_dgrad_kernel<T>>(grid, kDirectThreads, 0, stream, a, static_cast<const T*>(dy),
                                                   static_cast<const T*>(w), static_cast<const T*>(bias),
                                                   static_cast<T*>(dx));
  });
}

cudaError_t depthwise_backward_weight(DType dt, const DirectParams& p, const void* dy, const void* x, void* dw,
                                      void* ws, int splits, cudaStream_t stream) {
  const DirectArgs a = direct_args(p);
  const long long pixels = static_cast<long long>(p.N) * p.P * p.Q;
  const long long chunk = (pixels + splits - 1) / splits;
  const long long outputs = static_cast<long long>(p.K) * p.R * p.S;
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    cudaError_t err = arch::launch<depthwise_wgrad_kernel<T>>(
        dim3(static_cast<unsigned>(outputs), splits), kReduceThreads, 0, stream, a, static_cast<const T*>(dy),
        static_cast<const T*>(x), static_cast<A*>(ws), pixels, chunk);
    if (err != cudaSuccess) return err;
    return reduce_splits(dt, ws, splits, outputs, dw, stream);
  });
}

cudaError_t bias_backward(DType dt, const DirectParams& p, const void* dy, void* db, void* ws, int splits,
                          cudaStream_t stream) {
  const DirectArgs a = direct_args(p);
  const long long pixels = static_cast<long long>(p.N) * p.P * p.Q;
  const long long chunk = (pixels + splits - 1) / splits;
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    const cudaError_t err =
        p.nhwc ? arch::launch<bias_nhwc_kernel<T>>(dim3(arch::grid_1d(p.K, 32), splits), kReduceThreads, 0, stream, a,
                                                   static_cast<const T*>(dy), static_cast<A*>(ws), pixels, chunk)
               : arch::launch<bias_nchw_kernel<T>>(dim3(p.K, splits), kReduceThreads, 0, stream, a,
                                                   static_cast<const T*>(dy), static_cast<A*>(ws), pixels, chunk);
    if (err != cudaSuccess) return err;
    return reduce_splits(dt, ws, splits, p.K, db, stream);
  });
}

cudaError_t reduce_splits(DType dt, const void* ws, int splits, int64_t n, void* out, cudaStream_t stream,
                          const void* bias, int64_t channels, int64_t inner) {
  if (n <= 0) return cudaSuccess;
  if (bias && (channels < 1 || inner < 1)) return cudaErrorInvalidValue;
  const unsigned blocks = arch::grid_1d(n, kDirectThreads, 1, 0, kMaxGridStrideBlocks);
  return dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    return arch::launch<reduce_splits_kernel<T>>(blocks, kDirectThreads, 0, stream, static_cast<const A*>(ws), splits,
                                                 n, static_cast<T*>(out), static_cast<const T*>(bias),
                                                 static_cast<long long>(channels), static_cast<long long>(inner));
  });
}

cudaError_t transpose_batched(DType dt, const void* in, void* out, int64_t batch, int64_t I, int64_t J,
                              cudaStream_t stream) {
  if (batch <= 0 || I <= 0 || J <= 0) return cudaSuccess;
  const int64_t ti = (I + kTransTile - 1) / kTransTile, tj = (J + kTransTile - 1) / kTransTile;
  const int64_t tiles = batch * ti * tj;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(tiles, kMaxGridStrideBlocks * 4));
  auto run = [&](auto tag) {
    using T = decltype(tag);
    return arch::launch<transpose_kernel<T>>(blocks, kTransThreads, 0, stream, static_cast<const T*>(in),
                                             static_cast<T*>(out), I, J, ti, tj, tiles);
  };
  switch (dt) {  // the dtypes of the vector path (float64 has none)
    case DType::kFloat16: return run(__half{});
    case DType::kBFloat16: return run(__nv_bfloat16{});
    case DType::kFloat32: return run(float{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace conv
}  // namespace deepops
