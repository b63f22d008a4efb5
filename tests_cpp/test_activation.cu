// C++ test of the activation launchers (csrc/kernels/activation.h) against a host reference (needs a GPU; exits 77 =
// skipped without one; the emulated build always runs).
//
// Every launcher (relu_forward, leaky_relu_forward, relu_backward, leaky_relu_backward) in every dtype (float16,
// bfloat16, float32, float64), compared EXACTLY (same bits, or both NaN) with a host reference that does the same
// arithmetic: in the compute type (float for the 16-bit types), rounded once to the storage type; the slope rounded
// to the compute type.  Covered:
// * sizes 0, below / at / just above the vector width (16 bytes: 8, 4, 2 elements), sizes with a tail
//   (n % width != 0), and one that makes the grid-stride loops wrap (the emulated device is given 2 SMs through
//   DEEPOPS_EMU_SM_COUNT unless that is set; the GPU build adds a size past the grid cap of a 132-SM GPU);
// * aligned buffers (vector path), every pointer offset by one element (scalar path), and one misaligned pointer
//   among aligned ones (each of x / grad, the second input, y), which must also take the scalar path;
// * forward in place (x == y);
// * NaN, +-inf, -0.0, +0.0, subnormal and overflowing (16-bit, slope -2.5) values in both inputs: ReLU maps only
//   v < 0 to 0 (NaN and -0.0 pass); leaky ReLU multiplies every v that is not > 0 (NaN stays NaN, -0.0 * slope);
//   relu_backward gives 0 where result <= 0 and grad otherwise (NaN result passes grad, as PyTorch's
//   threshold_backward); leaky_relu_backward gives grad where x > 0 and grad * slope otherwise (NaN x too);
//   slopes 0.01 (not exact in any type) and -2.5;
// * nothing is written outside [y, y + n): guard elements before and after y keep their sentinel value.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "test_util.h"  // first: the CUDA headers come through kernels/arch/config.h
#include "test_dtypes.h"
#include "kernels/activation.h"

namespace {

constexpr int kGuard = 9;  // sentinel elements after each buffer's region (and the offset before it)

// input x / result: a smooth signal with special values mixed in (positions chosen to hit vector lanes and tails)
double input_value(long i) {
  switch (i % 13) {
    case 0: return NAN;
    case 1: return -0.0;
    case 2: return 0.0;
    case 3: return INFINITY;
    case 4: return -INFINITY;
    case 5: return (i & 1) ? -1e-41 : 1e-41;  // float subnormal (0 in the 16-bit types)
    case 6: return (i & 1) ? -3e-6 : 3e-6;    // half subnormal
    case 7: return (i & 1) ? -60000.0 : 60000.0;  // * -2.5 overflows float16
    default: return std::sin(0.37 * i) * 5.0;
  }
}
// grad: its own pattern, so that special grads meet every kind of x
double grad_value(long i) {
  switch (i % 11) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -0.0;
    case 3: return -INFINITY;
    case 4: return 0.0;
    default: return std::cos(0.29 * i) * 3.0;
  }
}

template <typename T> struct Ref {
  using C = typename Dt<T>::C;
  static T relu(T x) {
    const C v = Dt<T>::to_c(x);
    return Dt<T>::from_c(v < C(0) ? C(0) : v);
  }
  static T leaky(T x, double slope) {
    const C v = Dt<T>::to_c(x), s = static_cast<C>(slope);
    return Dt<T>::from_c(v > C(0) ? v : v * s);
  }
  static T relu_bwd(T g, T result) {
    const C r = Dt<T>::to_c(result);
    return Dt<T>::from_c(r <= C(0) ? C(0) : Dt<T>::to_c(g));
  }
  static T leaky_bwd(T g, T x, double slope) {
    const C v = Dt<T>::to_c(x), gv = Dt<T>::to_c(g), s = static_cast<C>(slope);
    return Dt<T>::from_c(v > C(0) ? gv : gv * s);
  }
};

// Pointer offsets in elements: a = x (forward) or grad (backward), b = result / x (backward), y = output.
struct Offsets {
  int a, b, y;
};

template <typename T> int run_dtype(T) {
  using R = Ref<T>;
  const T sentinel = Dt<T>::from(-12345.0);
  std::vector<long> sizes = {0, 1, 2, 3, 7, 8, 9, 15, 17, 1000, 4099, 140001};
#if !defined(DEEPOPS_EMULATE)
  sizes.push_back(9000003);  // past the unary grid cap of 132 SMs for the 16-bit types (8 waves x 1024 x 8)
#endif
  const Offsets all_offsets[] = {{0, 0, 0}, {1, 1, 1}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  int failures = 0;
  for (long n : sizes) {
    const long len = n + 1 + kGuard;  // room for an offset of one and the guard
    std::vector<T> hx(len), hg(len);
    for (long i = 0; i < len; ++i) {
      hx[i] = Dt<T>::from(input_value(i));
      hg[i] = Dt<T>::from(grad_value(i));
    }
    T *da, *db, *dy;
    CHECK(cudaMalloc(&da, len * sizeof(T)));
    CHECK(cudaMalloc(&db, len * sizeof(T)));
    CHECK(cudaMalloc(&dy, len * sizeof(T)));
    std::vector<T> out(len), want(n);
    // compares dy (whole buffer) with want at offset oy and the sentinel elsewhere
    auto check = [&](const char* op, const Offsets& o, double slope) -> int {
      if (cudaMemcpy(out.data(), dy, len * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) return 1;
      int bad = 0;
      for (long i = 0; i < len; ++i) {
        const bool inside = i >= o.y && i < o.y + n;
        const T w = inside ? want[i - o.y] : sentinel;
        if (!same_value(out[i], w)) {
          if (failures + bad < 10)
            std::printf("%s %s n=%ld offsets(a=%d b=%d y=%d) slope=%g: y[%ld]%s got %g want %g\n", dt_name<T>(), op,
                        n, o.a, o.b, o.y, slope, i - o.y, inside ? "" : " (guard)", to_double(out[i]),
                        to_double(w));
          ++bad;
        }
      }
      return bad;
    };
    auto fill_y = [&]() -> cudaError_t {
      std::vector<T> s(len, sentinel);
      return cudaMemcpy(dy, s.data(), len * sizeof(T), cudaMemcpyHostToDevice);
    };
    for (const Offsets& o : all_offsets) {
      const bool mixed = !(o.a == o.b && o.b == o.y);
      if (mixed && n > 4099) continue;  // path selection only: small sizes suffice
      // inputs: a holds x (forward) / grad (backward) at offset o.a, b holds x / result at offset o.b
      std::vector<T> ha(len, sentinel), hb(len, sentinel);
      for (long i = 0; i < n; ++i) {
        ha[o.a + i] = hx[i];
        hb[o.b + i] = hx[i];
      }
      std::vector<T> hga(len, sentinel);
      for (long i = 0; i < n; ++i) hga[o.a + i] = hg[i];
      const T* x = da + o.a;
      T* y = dy + o.y;

      // forward (a = x)
      CHECK(cudaMemcpy(da, ha.data(), len * sizeof(T), cudaMemcpyHostToDevice));
      CHECK(fill_y());
      CHECK(deepops::relu_forward(Dt<T>::tag, x, y, n, nullptr));
      for (long i = 0; i < n; ++i) want[i] = R::relu(hx[i]);
      failures += check("relu_forward", o, 0);
      for (double slope : {0.01, -2.5}) {
        CHECK(fill_y());
        CHECK(deepops::leaky_relu_forward(Dt<T>::tag, x, y, n, slope, nullptr));
        for (long i = 0; i < n; ++i) want[i] = R::leaky(hx[i], slope);
        failures += check("leaky_relu_forward", o, slope);
      }
      // forward in place (x == y, at y's offset)
      if (!mixed) {
        std::vector<T> hy(len, sentinel);
        for (long i = 0; i < n; ++i) hy[o.y + i] = hx[i];
        CHECK(cudaMemcpy(dy, hy.data(), len * sizeof(T), cudaMemcpyHostToDevice));
        CHECK(deepops::relu_forward(Dt<T>::tag, y, y, n, nullptr));
        for (long i = 0; i < n; ++i) want[i] = R::relu(hx[i]);
        failures += check("relu_forward in place", o, 0);
        for (double slope : {0.01, -2.5}) {
          CHECK(cudaMemcpy(dy, hy.data(), len * sizeof(T), cudaMemcpyHostToDevice));
          CHECK(deepops::leaky_relu_forward(Dt<T>::tag, y, y, n, slope, nullptr));
          for (long i = 0; i < n; ++i) want[i] = R::leaky(hx[i], slope);
          failures += check("leaky_relu_forward in place", o, slope);
        }
      }
      // backward (a = grad, b = result / x)
      CHECK(cudaMemcpy(da, hga.data(), len * sizeof(T), cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(db, hb.data(), len * sizeof(T), cudaMemcpyHostToDevice));
      CHECK(fill_y());
      CHECK(deepops::relu_backward(Dt<T>::tag, da + o.a, db + o.b, y, n, nullptr));
      for (long i = 0; i < n; ++i) want[i] = R::relu_bwd(hg[i], hx[i]);
      failures += check("relu_backward", o, 0);
      for (double slope : {0.01, -2.5}) {
        CHECK(fill_y());
        CHECK(deepops::leaky_relu_backward(Dt<T>::tag, da + o.a, db + o.b, y, n, slope, nullptr));
        for (long i = 0; i < n; ++i) want[i] = R::leaky_bwd(hg[i], hx[i], slope);
        failures += check("leaky_relu_backward", o, slope);
      }
    }
    CHECK(cudaFree(da));
    CHECK(cudaFree(db));
    CHECK(cudaFree(dy));
  }
  std::printf("%-8s %s\n", dt_name<T>(), failures ? "FAILED" : "ok");
  return failures;
}

// The reference itself, on hand-picked values (so that a reference that drifted from the documented semantics
// fails too, not only a kernel that drifted from the reference).
int check_reference() {
  int bad = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::printf("reference: %s\n", what);
      ++bad;
    }
  };
  using RF = Ref<float>;
  expect(bits_of(RF::relu(-0.f)) == bits_of(-0.f), "relu(-0.0) is -0.0");
  expect(std::isnan(RF::relu(NAN)), "relu(NaN) is NaN");
  expect(RF::relu(-1.f) == 0.f && RF::relu(2.f) == 2.f, "relu(-1) = 0, relu(2) = 2");
  expect(bits_of(RF::leaky(-0.f, 0.5)) == bits_of(-0.f), "leaky(-0.0) is -0.0");
  expect(bits_of(RF::leaky(-0.f, -0.5)) == bits_of(0.f), "leaky(-0.0, slope -0.5) is +0.0");
  expect(RF::leaky(-2.f, 0.25) == -0.5f && RF::leaky(3.f, 0.25) == 3.f, "leaky(-2, 0.25) = -0.5, leaky(3) = 3");
  expect(std::isnan(RF::leaky(NAN, 0.25)), "leaky(NaN) is NaN");
  expect(RF::relu_bwd(5.f, 0.f) == 0.f && RF::relu_bwd(5.f, -0.f) == 0.f && RF::relu_bwd(5.f, 1.f) == 5.f,
         "relu_backward: 0 where result <= 0");
  expect(RF::relu_bwd(5.f, NAN) == 5.f, "relu_backward: NaN result passes grad");
  expect(RF::leaky_bwd(4.f, 1.f, 0.25) == 4.f && RF::leaky_bwd(4.f, 0.f, 0.25) == 1.f &&
             RF::leaky_bwd(4.f, NAN, 0.25) == 1.f,
         "leaky_relu_backward: grad * slope where x is not > 0");
  // 16-bit: one rounding of the float result; the slope rounded to float, not to the 16-bit type
  using RH = Ref<__half>;
  expect(to_double(RH::leaky(Dt<__half>::from(-60000.0), -2.5)) == INFINITY, "half leaky overflows to inf");
  expect(to_double(RH::leaky(Dt<__half>::from(1000.0), 0.01)) == 1000.0, "half leaky(1000) = 1000");
  expect(to_double(RH::leaky(Dt<__half>::from(-1000.0), 0.01)) ==
             static_cast<double>(__half2float(__float2half_rn(-1000.f * 0.01f))),
         "half leaky(-1000, 0.01) = half(-1000 * float(0.01))");
  expect(Ref<double>::leaky(-1.0, 0.01) == -0.01, "double slope stays double");
  return bad;
}

}  // namespace

int main() {
  use_small_emulated_device();
  int failures = check_reference();
  if (!gpu_present()) {
    std::printf("no GPU: skipped\n");
    return failures ? 1 : kSkipped;
  }
  failures += for_each_dtype([](auto t) { return run_dtype(t); });
  CHECK(cudaDeviceSynchronize());
  std::printf(failures ? "FAILED (%d)\n" : "passed\n", failures);
  return failures ? 1 : 0;
}
