// C++ test of the max-pool launchers against a naive host reference (needs a GPU; exits 77 = skipped without one).
// Covers NCHW and NHWC (vector and scalar channel paths), padding, dilation, ceil-mode sizes, ties, NaN, and the
// gather backward against a host scatter in output order.
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "test_util.h"
#include "kernels/pool.h"


using deepops::Pool2dShape;

static int64_t out_size(int64_t n, int k, int s, int p, int d, bool ceil_mode) {
  const int64_t num = n + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t o = num / s + 1;  // num >= 0 in these cases
  if (ceil_mode && (o - 1) * s >= n + p) --o;
  return o;
}

// element (n, c, h, w) of a buffer in NCHW or NHWC order
static int64_t at(const Pool2dShape& s, bool cl, int64_t n, int64_t c, int64_t h, int64_t w, int64_t H, int64_t W) {
  return cl ? ((n * H + h) * W + w) * s.c + c : ((n * s.c + c) * H + h) * W + w;
}

static void reference(const std::vector<float>& x, const Pool2dShape& s, bool cl, std::vector<float>& y,
                      std::vector<int64_t>& ind) {
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t oh = 0; oh < s.oh; ++oh)
        for (int64_t ow = 0; ow < s.ow; ++ow) {
          float m = -std::numeric_limits<float>::infinity();
          int64_t mi = -1;
          for (int a = 0; a < s.kh; ++a)
            for (int b = 0; b < s.kw; ++b) {
              const int64_t ih = oh * s.sh - s.ph + a * s.dh, iw = ow * s.sw - s.pw + b * s.dw;
              if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
              const float v = x[at(s, cl, n, c, ih, iw, s.h, s.w)];
              if (mi < 0) mi = ih * s.w + iw;
              if (v > m || std::isnan(v)) {
                m = v;
                mi = ih * s.w + iw;
              }
            }
          const int64_t o = at(s, cl, n, c, oh, ow, s.oh, s.ow);
          y[o] = m;
          ind[o] = mi;
        }
}

static bool same(float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); }

int main() {
  if (!gpu_present()) {
    std::printf("no GPU: skipped\n");
    return kSkipped;
  }
  struct Case {
    int64_t n, c, h, w;
    int k, s, p, d;
    bool ceil_mode;
  };
  const Case cases[] = {{2, 3, 9, 11, 3, 2, 1, 1, false}, {2, 8, 9, 11, 3, 2, 1, 1, true},
                        {1, 16, 16, 16, 2, 2, 0, 1, false}, {3, 5, 10, 7, 3, 1, 1, 2, true},
                        {1, 4, 5, 5, 2, 3, 1, 1, true},    {4, 64, 14, 14, 3, 2, 1, 1, false}};
  int failures = 0;
  for (const Case& cs : cases) {
    for (bool cl : {false, true}) {
      Pool2dShape s{cs.n, cs.c, cs.h, cs.w, 0, 0, cs.k, cs.k, cs.s, cs.s, cs.p, cs.p, cs.d, cs.d};
      s.oh = out_size(cs.h, cs.k, cs.s, cs.p, cs.d, cs.ceil_mode);
      s.ow = out_size(cs.w, cs.k, cs.s, cs.p, cs.d, cs.ceil_mode);
      const int64_t nin = s.n * s.c * s.h * s.w, nout = s.n * s.c * s.oh * s.ow;
      std::vector<float> x(nin), y(nout), yr(nout), g(nout), gi(nin), gr(nin, 0.f);
      std::vector<int64_t> ind(nout), indr(nout);
      for (int64_t i = 0; i < nin; ++i) x[i] = std::floor(std::sin(0.7f * i) * 4.f);  // many ties
      x[nin / 3] = std::nanf("");
      for (int64_t i = 0; i < nout; ++i) g[i] = std::cos(0.3f * i);
      reference(x, s, cl, yr, indr);
      float *dx, *dy, *dg, *dgi;
      int64_t* di;
      CHECK(cudaMalloc(&dx, nin * 4));
      CHECK(cudaMalloc(&dy, nout * 4));
      CHECK(cudaMalloc(&dg, nout * 4));
      CHECK(cudaMalloc(&dgi, nin * 4));
      CHECK(cudaMalloc(&di, nout * 8));
      CHECK(cudaMemcpy(dx, x.data(), nin * 4, cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(dg, g.data(), nout * 4, cudaMemcpyHostToDevice));
      CHECK(deepops::max_pool2d_forward(deepops::DType::kFloat32, dx, dy, di, s, cl, nullptr));
      CHECK(cudaMemcpy(y.data(), dy, nout * 4, cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(ind.data(), di, nout * 8, cudaMemcpyDeviceToHost));
      for (int64_t i = 0; i < nout; ++i)
        if ((!same(y[i], yr[i]) || ind[i] != indr[i]) && failures++ < 5)
          std::printf("fwd cl=%d i=%lld got %g/%lld want %g/%lld\n", cl, (long long)i, y[i], (long long)ind[i], yr[i],
                      (long long)indr[i]);
      // values only
      CHECK(cudaMemset(dy, 0, nout * 4));
      CHECK(deepops::max_pool2d_forward(deepops::DType::kFloat32, dx, dy, nullptr, s, cl, nullptr));
      CHECK(cudaMemcpy(y.data(), dy, nout * 4, cudaMemcpyDeviceToHost));
      for (int64_t i = 0; i < nout; ++i)
        if (!same(y[i], yr[i]) && failures++ < 5) std::printf("values-only cl=%d i=%lld\n", cl, (long long)i);
      // backward: host scatter in output order (per plane that is increasing (oh, ow))
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t oh = 0; oh < s.oh; ++oh)
            for (int64_t ow = 0; ow < s.ow; ++ow) {
              const int64_t o = at(s, cl, n, c, oh, ow, s.oh, s.ow);
              const int64_t e = indr[o];
              gr[at(s, cl, n, c, e / s.w, e % s.w, s.h, s.w)] += g[o];
            }
      CHECK(deepops::max_pool2d_backward(deepops::DType::kFloat32, dg, di, dgi, s, cl, nullptr));
      CHECK(cudaMemcpy(gi.data(), dgi, nin * 4, cudaMemcpyDeviceToHost));
      for (int64_t i = 0; i < nin; ++i)
        if (gi[i] != gr[i] && failures++ < 5)
          std::printf("bwd cl=%d i=%lld got %g want %g\n", cl, (long long)i, gi[i], gr[i]);
      cudaFree(dx);
      cudaFree(dy);
      cudaFree(dg);
      cudaFree(dgi);
      cudaFree(di);
    }
  }
  CHECK(cudaDeviceSynchronize());
  std::printf(failures ? "FAILED (%d)\n" : "passed\n", failures);
  return failures ? 1 : 0;
}
