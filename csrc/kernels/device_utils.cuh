// Device-side helpers shared by the kernels: conversion of the storage types to their compute type, zeroing of
// register arrays, 16-byte vectors, the dtype dispatch.
#pragma once

#include <type_traits>

#include "arch/launch.h"
#include "common.h"

namespace deepops {

// The type arithmetic is done in: float for the 16-bit formats (as PyTorch does), the type itself otherwise.
template <typename T> struct Compute { using type = T; };
template <> struct Compute<__half> { using type = float; };
template <> struct Compute<__nv_bfloat16> { using type = float; };

template <typename T> __device__ __forceinline__ typename Compute<T>::type to_compute(T v) { return v; }
template <> __device__ __forceinline__ float to_compute(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_compute(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_compute(typename Compute<T>::type v) { return v; }
template <> __device__ __forceinline__ __half from_compute(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_compute(float v) { return __float2bfloat16_rn(v); }

// Zero into every element of a register array of any rank (the accumulators of a thread's tile), fully unrolled.
template <typename T, int N> __device__ __forceinline__ void zero_fill(T (&a)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
    if constexpr (std::is_array<T>::value) zero_fill(a[i]);
    else a[i] = T(0);
  }
}

// Whether a pointer allows 16-byte vector accesses.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// N elements of T moved as one aligned access (16 bytes when N * sizeof(T) == 16).
template <typename T, int N> struct alignas(sizeof(T) * N) Vec { T v[N]; };

// Dispatch on DType: calls f(T{}) with the matching storage type.
template <typename F> cudaError_t dispatch_float(DType dt, F&& f) {
  switch (dt) {
    case DType::kFloat16: return f(__half{});
    case DType::kBFloat16: return f(__nv_bfloat16{});
    case DType::kFloat32: return f(float{});
    case DType::kFloat64: return f(double{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace deepops
