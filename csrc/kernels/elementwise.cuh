// Generic vectorised elementwise kernels (one and two inputs), used by the activation kernels.
//
// Strategy: an elementwise op moves each byte once, so it is bound by memory bandwidth and all that matters is
// how the bytes move.  Each thread moves 16 bytes per access (Vec<T, 16 / sizeof(T)>: 4 floats, 8 halves), a
// warp moves 512 contiguous bytes per instruction, and each thread issues kUnroll independent loads before its
// first store so that enough bytes are in flight to cover DRAM latency.  The grid is a grid-stride loop sized to
// a few waves of the GPU.  Elements left over after the last whole vector (n % V) are done one by one by the
// first threads of block 0.  Pointers that are not 16-byte aligned (a storage offset) take the V = 1 variant.
// The unary kernel may run in place (x == y): every element is read before it is written, by the same thread.
#pragma once

#include "device_utils.cuh"

namespace deepops {

constexpr int kEwThreads = 256;  // threads per block
constexpr int kEwUnroll = 4;     // 16-byte loads in flight per thread (a binary op loads two per vector)
constexpr int kEwWaves = 8;      // grid size cap, in blocks per SM

template <typename T, int V, typename Op>
__global__ void __launch_bounds__(kEwThreads) unary_kernel(const T* x, T* y, int64_t n, Op op) {
  using VT = Vec<T, V>;
  const int64_t nvec = n / V;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kEwThreads * kEwUnroll;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kEwThreads * kEwUnroll + threadIdx.x; base < nvec;
       base += step) {
    VT r[kEwUnroll];
#pragma unroll
    for (int u = 0; u < kEwUnroll; ++u) {
      const int64_t i = base + u * kEwThreads;
      if (i < nvec) r[u] = reinterpret_cast<const VT*>(x)[i];
    }
#pragma unroll
    for (int u = 0; u < kEwUnroll; ++u) {
      const int64_t i = base + u * kEwThreads;
      if (i < nvec) {
#pragma unroll
        for (int k = 0; k < V; ++k) r[u].v[k] = from_compute<T>(op(to_compute(r[u].v[k])));
        reinterpret_cast<VT*>(y)[i] = r[u];
      }
    }
  }
  if (blockIdx.x == 0 && threadIdx.x < n - nvec * V) {
    const int64_t i = nvec * V + threadIdx.x;
    y[i] = from_compute<T>(op(to_compute(x[i])));
  }
}

// Two inputs per vector: half the unroll keeps the same bytes in flight (and the 16-bit variants out of spills).
constexpr int kBinUnroll = kEwUnroll / 2;

template <typename T, int V, typename Op>
__global__ void __launch_bounds__(kEwThreads) binary_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                                            T* __restrict__ y, int64_t n, Op op) {
  using VT = Vec<T, V>;
  const int64_t nvec = n / V;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kEwThreads * kBinUnroll;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kEwThreads * kBinUnroll + threadIdx.x; base < nvec;
       base += step) {
    VT ra[kBinUnroll], rb[kBinUnroll];
#pragma unroll
    for (int u = 0; u < kBinUnroll; ++u) {
      const int64_t i = base + u * kEwThreads;
      if (i < nvec) {
        ra[u] = reinterpret_cast<const VT*>(a)[i];
        rb[u] = reinterpret_cast<const VT*>(b)[i];
      }
    }
#pragma unroll
    for (int u = 0; u < kBinUnroll; ++u) {
      const int64_t i = base + u * kEwThreads;
      if (i < nvec) {
#pragma unroll
        for (int k = 0; k < V; ++k) ra[u].v[k] = from_compute<T>(op(to_compute(ra[u].v[k]), to_compute(rb[u].v[k])));
        reinterpret_cast<VT*>(y)[i] = ra[u];
      }
    }
  }
  if (blockIdx.x == 0 && threadIdx.x < n - nvec * V) {
    const int64_t i = nvec * V + threadIdx.x;
    y[i] = from_compute<T>(op(to_compute(a[i]), to_compute(b[i])));
  }
}

template <typename T, typename Op>
cudaError_t launch_unary(const void* x, void* y, int64_t n, Op op, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  constexpr int V = 16 / sizeof(T);
  if (aligned16(x) && aligned16(y)) {
    return arch::launch<unary_kernel<T, V, Op>>(arch::grid_1d(n / V, kEwThreads, kEwUnroll, kEwWaves), kEwThreads, 0,
                                                s, static_cast<const T*>(x), static_cast<T*>(y), n, op);
  }
  return arch::launch<unary_kernel<T, 1, Op>>(arch::grid_1d(n, kEwThreads, kEwUnroll, kEwWaves), kEwThreads, 0, s,
                                              static_cast<const T*>(x), static_cast<T*>(y), n, op);
}

template <typename T, typename Op>
cudaError_t launch_binary(const void* a, const void* b, void* y, int64_t n, Op op, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  constexpr int V = 16 / sizeof(T);
  if (aligned16(a) && aligned16(b) && aligned16(y)) {
    return arch::launch<binary_kernel<T, V, Op>>(arch::grid_1d(n / V, kEwThreads, kBinUnroll, kEwWaves), kEwThreads,
                                                 0, s, static_cast<const T*>(a), static_cast<const T*>(b),
                                                 static_cast<T*>(y), n, op);
  }
  return arch::launch<binary_kernel<T, 1, Op>>(arch::grid_1d(n, kEwThreads, kBinUnroll, kEwWaves), kEwThreads, 0, s,
                                               static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y),
                                               n, op);
}

}  // namespace deepops
