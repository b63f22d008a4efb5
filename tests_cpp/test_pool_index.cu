// Regression test of max pooling's choice between its 32- and 64-bit index kernels (csrc/kernels/pool.cu, fits32).
// The grid-stride loops once counted in 32 bits whenever the element count alone fitted, and overflowed when it lay
// within one grid stride (grid x 256 threads, about 540k on an H100) of 2^31, e.g. NCHW 8191 x 64 x 64 x 64: the
// 32-bit variant may only be taken when total + stride fits.  The kernels themselves at that size need ~9 GB and
// a GPU (python_tests/test_pool.py::test_near_int32_limit, in benchmarks/gpu_check.sh); this checks the rule on
// every machine.  Runs without a GPU (the SM count comes from the emulated device or the real one).
#include "test_util.h"  // first: the CUDA headers come through kernels/arch/config.h

#include <cstdio>

#include "kernels/pool.h"

int main() {
  int failures = 0;
  auto shape = [](int64_t n, int64_t c, int64_t h, int64_t w) {
    deepops::Pool2dShape s{n, c, h, w, h, w, 1, 1, 1, 1, 0, 0, 1, 1};  // 1x1 window: output = input size
    return s;
  };
  struct Case {
    deepops::Pool2dShape s;
    bool want32;
  } cases[] = {
      {shape(8, 64, 56, 56), true},          // ordinary
      {shape(8191, 64, 64, 64), false},      // 2^31 - 262144 elements: fits alone, not with a grid stride
      {shape(8192, 64, 64, 64), false},      // 2^31: too large alone
      {shape(4096, 64, 64, 64), true},       // 2^30: far from the limit
  };
  for (const Case& c : cases) {
    const bool got = deepops::max_pool2d_uses_32bit_indices(c.s);
    if (got != c.want32) {
      ++failures;
      std::printf("FAIL: %lldx%lldx%lldx%lld uses %s indices, want %s\n", (long long)c.s.n, (long long)c.s.c,
                  (long long)c.s.h, (long long)c.s.w, got ? "32-bit" : "64-bit", c.want32 ? "32-bit" : "64-bit");
    }
  }
  std::printf(failures ? "FAILED (%d)\n" : "passed\n", failures);
  return failures ? 1 : 0;
}
