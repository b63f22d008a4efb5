// The four storage types of the kernel library on the host, for the C++ tests: DType tag, name, compute type (float
// for the 16-bit formats, the type itself otherwise, as the kernels' Compute<T>), conversions (round to nearest
// even, with the toolkit's host-callable __float2half_rn / __float2bfloat16_rn), and an exact comparison of stored
// values (same bits, or both NaN).  Include after test_util.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/common.h"

template <typename T> struct Dt;
template <> struct Dt<__half> {
  using C = float;
  static constexpr deepops::DType tag = deepops::DType::kFloat16;
  static __half from(double v) { return __float2half_rn(static_cast<float>(v)); }  // from_c(float(v))
  static __half from_c(float v) { return __float2half_rn(v); }
  static float to_c(__half v) { return __half2float(v); }
};
template <> struct Dt<__nv_bfloat16> {
  using C = float;
  static constexpr deepops::DType tag = deepops::DType::kBFloat16;
  static __nv_bfloat16 from(double v) { return __float2bfloat16_rn(static_cast<float>(v)); }
  static __nv_bfloat16 from_c(float v) { return __float2bfloat16_rn(v); }
  static float to_c(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <> struct Dt<float> {
  using C = float;
  static constexpr deepops::DType tag = deepops::DType::kFloat32;
  static float from(double v) { return static_cast<float>(v); }
  static float from_c(float v) { return v; }
  static float to_c(float v) { return v; }
};
template <> struct Dt<double> {
  using C = double;
  static constexpr deepops::DType tag = deepops::DType::kFloat64;
  static double from(double v) { return v; }
  static double from_c(double v) { return v; }
  static double to_c(double v) { return v; }
};

template <typename T> const char* dt_name() { return deepops::dtype_name(Dt<T>::tag); }
template <typename T> double to_double(T v) { return static_cast<double>(Dt<T>::to_c(v)); }
template <typename T> bool is_nan(T v) { return std::isnan(to_double(v)); }

// the stored bits of v
template <typename T> uint64_t bits_of(T v) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8, "storage type");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));  // little-endian host
  return b;
}

// exact equality of stored values: same bits (so 0.0 != -0.0), or both NaN (any payload)
template <typename T> bool same_value(T a, T b) { return bits_of(a) == bits_of(b) || (is_nan(a) && is_nan(b)); }

// Runs f(T{}) for each of the four storage types (f returns an int: failures, or 1 for a CUDA error).
template <typename F> int for_each_dtype(F&& f) {
  int r = 0;
  r += f(__half{});
  r += f(__nv_bfloat16{});
  r += f(float{});
  r += f(double{});
  return r;
}
