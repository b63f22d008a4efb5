// C++ test of the max-pool launchers (csrc/kernels/pool.h) against a naive host reference (needs a GPU; exits 77 =
// skipped without one; the emulated build always runs).
//
// max_pool2d_forward (values and indices, and values only) and max_pool2d_backward in every dtype (float16,
// bfloat16, float32, float64), NCHW and channels_last.  Forward values and indices are compared exactly (same bits,
// or both NaN: the max is exact in every type); the backward against a host scatter in output order that sums in
// the compute type (float for the 16-bit types) and rounds once, as the kernel's gather, also compared exactly.
// Covered: padding, dilation, stride > kernel, ceil-mode sizes, ties (the first maximum wins, 0.0 against -0.0
// too), NaN (the last NaN of a window wins), -inf, windows without any tap inside the input (forward only: value
// -inf, index that of the first tap past the padding, outside the window, as PyTorch's kernels); channels_last
// with C a multiple of the vector width (16 bytes: 8, 4, 2 channels: vector path) or not (scalar path); every
// buffer offset by one element (scalar NHWC path), and only the indices offset by one int64 (the NHWC vector
// forward asks them 16-byte aligned too); a case large enough that the grid-stride loops wrap (the emulated device
// is given 2 SMs through DEEPOPS_EMU_SM_COUNT unless that is set; the GPU build adds a case past the grid cap of a
// 132-SM GPU); nothing is written outside the output buffers (guard elements before and after).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

#include "test_util.h"  // first: the CUDA headers come through kernels/arch/config.h
#include "test_dtypes.h"
#include "kernels/pool.h"
#include "kernels/shapes.h"

using deepops::Pool2dShape;
using deepops::pool_out_extent;

namespace {

constexpr int kGuard = 5;  // sentinel elements after each output buffer (and the offset before it)
int g_printed = 0;         // mismatches printed so far (all cases)

// element (n, c, h, w) of a buffer in NCHW or NHWC order
int64_t at(const Pool2dShape& s, bool cl, int64_t n, int64_t c, int64_t h, int64_t w, int64_t H, int64_t W) {
  return cl ? ((n * H + h) * W + w) * s.c + c : ((n * s.c + c) * H + h) * W + w;
}

// first tap at or after a window's start that is >= 0 (it may lie past the input's end)
int64_t first_tap(int64_t start, int step) { return start >= 0 ? start : start + ((-start + step - 1) / step) * step; }

// PyTorch's scan, in the compute type: a tap replaces the maximum when greater or NaN.  The maximum starts at -inf
// with the index of the first tap at or after the window's start that is >= 0 in both dimensions (the first
// in-bounds tap when there is one; a window with no tap inside the input keeps it, as PyTorch's kernels).
template <typename T>
void reference(const std::vector<T>& x, const Pool2dShape& s, bool cl, std::vector<T>& y, std::vector<int64_t>& ind) {
  using C = typename Dt<T>::C;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t oh = 0; oh < s.oh; ++oh)
        for (int64_t ow = 0; ow < s.ow; ++ow) {
          C m = -std::numeric_limits<C>::infinity();
          int64_t mi = first_tap(oh * s.sh - s.ph, s.dh) * s.w + first_tap(ow * s.sw - s.pw, s.dw);
          for (int a = 0; a < s.kh; ++a)
            for (int b = 0; b < s.kw; ++b) {
              const int64_t ih = oh * s.sh - s.ph + a * s.dh, iw = ow * s.sw - s.pw + b * s.dw;
              if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
              const C v = Dt<T>::to_c(x[at(s, cl, n, c, ih, iw, s.h, s.w)]);
              if (v > m || std::isnan(v)) {
                m = v;
                mi = ih * s.w + iw;
              }
            }
          const int64_t o = at(s, cl, n, c, oh, ow, s.oh, s.ow);
          y[o] = Dt<T>::from_c(m);
          ind[o] = mi;
        }
}

// backward: host scatter in output order (per plane that is increasing (oh, ow)), summed in the compute type
template <typename T>
void reference_backward(const std::vector<T>& g, const std::vector<int64_t>& ind, const Pool2dShape& s, bool cl,
                        std::vector<T>& gi) {
  using C = typename Dt<T>::C;
  std::vector<C> acc(gi.size(), C(0));
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t oh = 0; oh < s.oh; ++oh)
        for (int64_t ow = 0; ow < s.ow; ++ow) {
          const int64_t o = at(s, cl, n, c, oh, ow, s.oh, s.ow);
          const int64_t e = ind[o];
          if (e < 0 || e >= s.h * s.w) continue;  // a window without taps may name an element outside the plane
          acc[at(s, cl, n, c, e / s.w, e % s.w, s.h, s.w)] += Dt<T>::to_c(g[o]);
        }
  for (size_t i = 0; i < gi.size(); ++i) gi[i] = Dt<T>::from_c(acc[i]);
}

struct Case {
  int64_t n, c, h, w;
  int k, s, p, d;
  bool ceil_mode;
  bool compare_backward = true;
};

// Alignment variants: every buffer aligned; every buffer (values and indices) offset by one element; only the
// indices offset by one int64 (the NHWC forward must then store them one by one).
enum Align { kAligned = 0, kAllOffset = 1, kIndexOffset = 2 };

template <typename T> int run_case(const Case& cs, bool cl, Align align) {
  const char* name = dt_name<T>();
  Pool2dShape s{cs.n, cs.c, cs.h, cs.w, 0, 0, cs.k, cs.k, cs.s, cs.s, cs.p, cs.p, cs.d, cs.d};
  s.oh = pool_out_extent(cs.h, cs.k, cs.s, cs.p, cs.d, cs.ceil_mode);
  s.ow = pool_out_extent(cs.w, cs.k, cs.s, cs.p, cs.d, cs.ceil_mode);
  const int64_t nin = s.n * s.c * s.h * s.w, nout = s.n * s.c * s.oh * s.ow;
  const int ov = align == kAllOffset ? 1 : 0, oi = align == kAligned ? 0 : 1;  // offsets: values, indices
  const int64_t lin = nin + 1 + kGuard, lout = nout + 1 + kGuard;              // buffer lengths
  const T sentinel = Dt<T>::from(-777.0);
  const int64_t isentinel = -5;
  std::vector<T> x(nin), g(nout), yr(nout), gr(nin);
  std::vector<int64_t> indr(nout);
  for (int64_t i = 0; i < nin; ++i) {
    double v = std::floor(std::sin(0.7 * i) * 4.0);  // many ties
    if (i % 17 == 5) v = -0.0;                       // ties of 0.0 and -0.0: the first wins
    if (i % 23 == 7) v = -INFINITY;
    x[i] = Dt<T>::from(v);
  }
  x[nin / 3] = Dt<T>::from(NAN);  // two NaNs side by side: windows holding both take the second
  x[nin / 3 + 1] = Dt<T>::from(NAN);
  x[(2 * nin) / 3 + 1] = Dt<T>::from(NAN);
  for (int64_t i = 0; i < nout; ++i) g[i] = Dt<T>::from(std::cos(0.3 * i) * (1.0 + (i % 7) / 8.0));
  reference(x, s, cl, yr, indr);

  T *dx, *dy, *dg, *dgi;
  int64_t* di;
  CHECK(cudaMalloc(&dx, lin * sizeof(T)));
  CHECK(cudaMalloc(&dy, lout * sizeof(T)));
  CHECK(cudaMalloc(&dg, lout * sizeof(T)));
  CHECK(cudaMalloc(&dgi, lin * sizeof(T)));
  CHECK(cudaMalloc(&di, lout * 8));
  std::vector<T> fill(std::max(lin, lout), sentinel), out(std::max(lin, lout));
  std::vector<int64_t> ifill(lout, isentinel), iout(lout);
  CHECK(cudaMemcpy(dx + ov, x.data(), nin * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dg + ov, g.data(), nout * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dy, fill.data(), lout * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dgi, fill.data(), lin * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(di, ifill.data(), lout * 8, cudaMemcpyHostToDevice));

  int failures = 0;
  auto report = [&](const char* what, int64_t i, double got, double want, long long gidx, long long widx) {
    ++failures;
    if (g_printed++ < 20)
      std::printf("%s %s n=%lld c=%lld h=%lld w=%lld k=%d s=%d p=%d d=%d ceil=%d cl=%d align=%d i=%lld: got %g/%lld "
                  "want %g/%lld\n",
                  name, what, (long long)cs.n, (long long)cs.c, (long long)cs.h, (long long)cs.w, cs.k, cs.s, cs.p,
                  cs.d, cs.ceil_mode, cl, align, (long long)i, got, gidx, want, widx);
  };
  // checks a values buffer of length len holding want at offset ov, the sentinel elsewhere
  auto check_values = [&](const char* what, const T* dev, int64_t len, const std::vector<T>& want) -> cudaError_t {
    cudaError_t e = cudaMemcpy(out.data(), dev, len * sizeof(T), cudaMemcpyDeviceToHost);
    const int64_t count = static_cast<int64_t>(want.size());
    for (int64_t i = 0; i < len; ++i) {
      const bool inside = i >= ov && i < ov + count;
      const T w = inside ? want[i - ov] : sentinel;
      if (!same_value(out[i], w)) report(what, i - ov, to_double(out[i]), to_double(w), 0, 0);
    }
    return e;
  };

  // forward, values and indices
  CHECK(deepops::max_pool2d_forward(Dt<T>::tag, dx + ov, dy + ov, di + oi, s, cl, nullptr));
  CHECK(check_values("fwd", dy, lout, yr));
  CHECK(cudaMemcpy(iout.data(), di, lout * 8, cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < lout; ++i) {
    const bool inside = i >= oi && i < oi + nout;
    const int64_t w = inside ? indr[i - oi] : isentinel;
    if (iout[i] != w) report("fwd index", i - oi, 0, 0, (long long)iout[i], (long long)w);
  }
  // values only
  CHECK(cudaMemcpy(dy, fill.data(), lout * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(deepops::max_pool2d_forward(Dt<T>::tag, dx + ov, dy + ov, nullptr, s, cl, nullptr));
  CHECK(check_values("fwd values-only", dy, lout, yr));
  // backward, with the device's indices (checked above)
  reference_backward(g, indr, s, cl, gr);
  CHECK(deepops::max_pool2d_backward(Dt<T>::tag, dg + ov, di + oi, dgi + ov, s, cl, nullptr));
  if (cs.compare_backward) CHECK(check_values("bwd", dgi, lin, gr));
  CHECK(cudaFree(dx));
  CHECK(cudaFree(dy));
  CHECK(cudaFree(dg));
  CHECK(cudaFree(dgi));
  CHECK(cudaFree(di));
  return failures;
}

template <typename T> int run_dtype(T) {
  std::vector<Case> cases = {{2, 3, 9, 11, 3, 2, 1, 1, false},  {2, 8, 9, 11, 3, 2, 1, 1, true},
                             {1, 16, 16, 16, 2, 2, 0, 1, false}, {3, 5, 10, 7, 3, 1, 1, 2, true},
                             {1, 4, 5, 5, 2, 3, 1, 1, true},     {4, 64, 14, 14, 3, 2, 1, 1, false},
                             {2, 12, 7, 9, 3, 2, 1, 1, false},   {1, 2, 6, 6, 3, 3, 1, 1, false},
                             // W = 1, taps at columns -1 and 1: no window has a tap inside the input.  Backward not
                             // compared: PyTorch's scatter adds each such window's gradient to the element its index
                             // names (here one of another row), the kernel's gather does not
                             {1, 8, 3, 1, 2, 1, 1, 2, false, false},
                             // grid-stride wrap on 2 SMs (8192 threads) in every path: NHWC float16 has 10240 vectors
                             {2, 40, 32, 32, 3, 1, 1, 1, false}};
  int failures = 0;
  for (const Case& cs : cases)
    for (bool cl : {false, true})
      for (Align align : {kAligned, kAllOffset, kIndexOffset}) failures += run_case<T>(cs, cl, align);
#if !defined(DEEPOPS_EMULATE)
  // NHWC float16: 589824 vectors, past the grid cap of 132 SMs (16 x 256 threads each); aligned only
  for (bool cl : {false, true}) failures += run_case<T>({8, 64, 96, 96, 3, 1, 1, 1, false}, cl, kAligned);
#endif
  std::printf("%-8s %s\n", dt_name<T>(), failures ? "FAILED" : "ok");
  return failures;
}

}  // namespace

int main() {
  use_small_emulated_device();
  if (!gpu_present()) {
    std::printf("no GPU: skipped\n");
    return kSkipped;
  }
  const int failures = for_each_dtype([](auto t) { return run_dtype(t); });
  CHECK(cudaDeviceSynchronize());
  std::printf(failures ? "FAILED (%d)\n" : "passed\n", failures);
  return failures ? 1 : 0;
}
