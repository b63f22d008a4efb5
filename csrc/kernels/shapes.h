// The output-size formulas of the ops, written once for the C++ side: the bindings (csrc/torch) and the C++ tests
// use these.  The Python side has the same formulas in deepops/_rules.py.  Division rounds down (toward -inf), as
// Python's //, so a numerator below zero (a kernel larger than the padded input) gives an extent below one, which
// the callers report.
#pragma once

#include <cstdint>

namespace deepops {

// a / b rounded toward -inf, for b > 0
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// A convolution's output extent along one axis: floor((in + 2p - d(k - 1) - 1) / s) + 1.
inline int64_t conv_out_extent(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return floor_div(in + 2 * p - d * (k - 1) - 1, s) + 1;
}

// A transposed convolution's output extent along one axis: (in - 1)s - 2p + d(k - 1) + output_padding + 1.
inline int64_t conv_transpose_out_extent(int64_t in, int64_t k, int64_t s, int64_t p, int64_t output_padding,
                                         int64_t d) {
  return (in - 1) * s - 2 * p + d * (k - 1) + output_padding + 1;
}

// A pooling's output extent along one axis; with ceil_mode the division rounds up, but a last window that would
// start in the right padding is dropped (PyTorch's rule).
inline int64_t pool_out_extent(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  int64_t o = floor_div(in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
  if (ceil_mode && (o - 1) * s >= in + p) --o;
  return o;
}

}  // namespace deepops
