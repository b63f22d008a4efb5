// C++ test of the NMS and box IoU launchers (csrc/kernels/nms.h) against a host reference with torchvision's CPU
// arithmetic (needs a GPU; exits 77 = skipped without one; the emulated build always runs).
//
// Every dtype the launchers take: float32 and float64 computed in their own type, float16 and bfloat16 stored in
// 16 bits and computed in float32 (the reference is built from the values after conversion to the 16-bit type).
// * nms, plain and batched (class ids), thresholds 0, 0.5, 0.9 and -0.1 (no spatial pruning), on random boxes in
//   a sparse and a crowded field and on tied scores with identical and degenerate (negative-width; zero-width
//   after rounding to 16 bits) boxes; float64 coordinates that float32 cannot hold.  The kept indices must equal
//   the reference's, in rank order (stable descending score order: 16-bit scores tie often).  Sizes: float32 1,
//   5, 64, 65, 300, 512 (the single-block path), 513, 2000 and 9000 (the tiled path; 9000 also makes the helper
//   kernels' grid-stride loops wrap: the emulated device is given 2 SMs through DEEPOPS_EMU_SM_COUNT unless that
//   is set); the other dtypes 5, 64, 65, 513 and 2000 (the emulated tiled path is slow).
// * nms at the threshold's edge, every dtype, both paths: box pairs of IoU 1 / w, w within 3 ulps (of the dtype)
//   of 1 / t for thresholds t = 0.1, 0.3, 0.5, 0.7, 0.9 (the IoU in the compute type compared as
//   `(double) IoU > threshold`; float64 computed in float64).
// * box_iou of the first min(n, 100) boxes against the last, exact (same bits, or both NaN), with output float32
//   for the 16-bit types (the width and height differences rounded to the 16-bit type first, as torchvision's
//   box_iou on 16-bit tensors) and the dtype otherwise; plus a set of boxes with NaN, inf, -0.0 and degenerate
//   coordinates (NaN-propagating max / min, clamp that keeps NaN).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "test_util.h"  // first: the CUDA headers come through kernels/arch/config.h
#include "test_dtypes.h"
#include "kernels/nms.h"

namespace {

// torchvision's loop in the compute type C: stable descending order, kept box i suppresses later j of its class
// when IoU > thr (std::max / std::min as written there).
template <typename C>
std::vector<int64_t> reference(const std::vector<C>& b, const std::vector<C>& s, const std::vector<int64_t>* cls,
                               double thr) {
  const int n = static_cast<int>(s.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return s[a] > s[c]; });
  std::vector<C> area(n);
  for (int i = 0; i < n; ++i) area[i] = (b[4 * i + 2] - b[4 * i]) * (b[4 * i + 3] - b[4 * i + 1]);
  std::vector<char> sup(n, 0);
  std::vector<int64_t> keep;
  for (int a = 0; a < n; ++a) {
    const int i = order[a];
    if (sup[i]) continue;
    keep.push_back(i);
    for (int c = a + 1; c < n; ++c) {
      const int j = order[c];
      if (sup[j] || (cls && (*cls)[j] != (*cls)[i])) continue;
      const C xx1 = std::max(b[4 * i], b[4 * j]), yy1 = std::max(b[4 * i + 1], b[4 * j + 1]);
      const C xx2 = std::min(b[4 * i + 2], b[4 * j + 2]), yy2 = std::min(b[4 * i + 3], b[4 * j + 3]);
      const C w = std::max(C(0), xx2 - xx1), h = std::max(C(0), yy2 - yy1);
      const C inter = w * h;
      const C ovr = inter / (area[i] + area[j] - inter);
      if (ovr > thr) sup[j] = 1;  // compared in double, as torchvision
    }
  }
  return keep;
}

// torchvision.ops.box_iou on T: area in the compute type; lt / rb with NaN-propagating torch.max / torch.min; the
// difference rb - lt in T (rounded to the 16-bit type for the 16-bit types), then clamp(min=0) (NaN stays).
template <typename T> typename Dt<T>::C iou_reference(const T* p, const T* q) {
  using C = typename Dt<T>::C;
  auto v = [](T t) { return Dt<T>::to_c(t); };
  auto tmax = [](C a, C b) { return std::isnan(a) || std::isnan(b) ? C(NAN) : std::max(a, b); };
  auto tmin = [](C a, C b) { return std::isnan(a) || std::isnan(b) ? C(NAN) : std::min(a, b); };
  auto clamp0 = [](C a) { return a < C(0) ? C(0) : a; };
  const C a1 = (v(p[2]) - v(p[0])) * (v(p[3]) - v(p[1])), a2 = (v(q[2]) - v(q[0])) * (v(q[3]) - v(q[1]));
  const C w = clamp0(Dt<T>::to_c(Dt<T>::from_c(tmin(v(p[2]), v(q[2])) - tmax(v(p[0]), v(q[0])))));
  const C h = clamp0(Dt<T>::to_c(Dt<T>::from_c(tmin(v(p[3]), v(q[3])) - tmax(v(p[1]), v(q[1])))));
  return w * h / (a1 + a2 - w * h);
}

int g_printed = 0;  // mismatches printed so far

// box_iou(b1 (n1 x 4), b2 (n2 x 4)) on the device against iou_reference
template <typename T> int check_box_iou(const std::vector<T>& b1, const std::vector<T>& b2, const char* what) {
  using C = typename Dt<T>::C;
  const int64_t n1 = b1.size() / 4, n2 = b2.size() / 4;
  T *d1, *d2;
  C* dout;
  CHECK(cudaMalloc(&d1, b1.size() * sizeof(T)));
  CHECK(cudaMalloc(&d2, b2.size() * sizeof(T)));
  CHECK(cudaMalloc(&dout, n1 * n2 * sizeof(C)));
  CHECK(cudaMemcpy(d1, b1.data(), b1.size() * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(d2, b2.data(), b2.size() * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(deepops::box_iou(Dt<T>::tag, d1, d2, n1, n2, dout, nullptr));
  std::vector<C> out(n1 * n2);
  CHECK(cudaMemcpy(out.data(), dout, n1 * n2 * sizeof(C), cudaMemcpyDeviceToHost));
  int failures = 0;
  for (int64_t i = 0; i < n1; ++i)
    for (int64_t j = 0; j < n2; ++j) {
      const C want = iou_reference(&b1[4 * i], &b2[4 * j]), got = out[i * n2 + j];
      if (!same_value(got, want)) {
        ++failures;
        if (g_printed++ < 20)
          std::printf("%s box_iou %s (%lld, %lld): got %.9g want %.9g\n", dt_name<T>(), what, (long long)i,
                      (long long)j, (double)got, (double)want);
      }
    }
  CHECK(cudaFree(d1));
  CHECK(cudaFree(d2));
  CHECK(cudaFree(dout));
  return failures;
}

// nms on the device: the kept indices in got (returns 1 on a CUDA error)
template <typename T>
int nms_device(const std::vector<T>& b, const std::vector<T>& s, const std::vector<int64_t>* cls, double thr,
               std::vector<int64_t>& got) {
  const int n = static_cast<int>(s.size());
  T *db, *ds;
  int64_t *dc = nullptr, *dk, *dn;
  void* ws = nullptr;
  const size_t wsb = deepops::nms_workspace_bytes(Dt<T>::tag, n, cls != nullptr);
  CHECK(cudaMalloc(&db, 4 * n * sizeof(T)));
  CHECK(cudaMalloc(&ds, n * sizeof(T)));
  CHECK(cudaMalloc(&dk, 8 * n));
  CHECK(cudaMalloc(&dn, 8));
  if (wsb) CHECK(cudaMalloc(&ws, wsb));
  CHECK(cudaMemcpy(db, b.data(), 4 * n * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(ds, s.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  if (cls) {
    CHECK(cudaMalloc(&dc, 8 * n));
    CHECK(cudaMemcpy(dc, cls->data(), 8 * n, cudaMemcpyHostToDevice));
  }
  CHECK(deepops::nms(Dt<T>::tag, db, ds, dc, n, thr, ws, wsb, dk, dn, nullptr));
  int64_t got_n = -1;
  CHECK(cudaMemcpy(&got_n, dn, 8, cudaMemcpyDeviceToHost));
  got.assign(std::max<int64_t>(got_n, 0), -1);
  if (got_n > 0) CHECK(cudaMemcpy(got.data(), dk, 8 * got_n, cudaMemcpyDeviceToHost));
  if (got_n < 0) got.assign(1, -12345);  // never a valid answer
  CHECK(cudaFree(db));
  CHECK(cudaFree(ds));
  if (dc) CHECK(cudaFree(dc));
  CHECK(cudaFree(dk));
  CHECK(cudaFree(dn));
  if (ws) CHECK(cudaFree(ws));
  return 0;
}

// v moved by k representable values of T (v > 0)
template <typename T> T step_ulps(T v, int k) {
  uint64_t b = bits_of(v) + static_cast<int64_t>(k);
  T r;
  std::memcpy(static_cast<void*>(&r), &b, sizeof(T));  // little-endian host
  return r;
}

// Suppression at the threshold's edge: pairs A = (0, 0, 1, 1) (score 0.9) and B = (0, 0, w, 1) (score 0.2) with
// IoU = 1 / w for the values w of T within 3 ulps of 1 / t, t in {0.5, 0.1, 0.3, 0.7, 0.9}, at each of those
// thresholds.  Shows whether the comparison is `(double) IoU > threshold` on the IoU computed in the compute type
// (0.1 is not a float: a float IoU of float(0.1) is > 0.1) and that float64 is computed in float64 (w = 2 - ulp).
// Batched with one class per pair (each pair on its own), and plain (all boxes overlap); 70 boxes (the
// single-block path) and the set 8 times over, 560 boxes, each copy with its own classes (the tiled path).
template <typename T> int nms_threshold_edges() {
  using C = typename Dt<T>::C;
  const double ts[] = {0.5, 0.1, 0.3, 0.7, 0.9};
  std::vector<T> ws;
  for (double t : ts)
    for (int k = -3; k <= 3; ++k) ws.push_back(step_ulps(Dt<T>::from(1.0 / t), k));
  int failures = 0;
  for (int copies : {1, 8}) {
    std::vector<T> b, s;
    std::vector<int64_t> cls;
    for (int c = 0; c < copies; ++c)
      for (size_t p = 0; p < ws.size(); ++p) {
        for (double v : {0.0, 0.0, 1.0, 1.0}) b.push_back(Dt<T>::from(v));
        for (double v : {0.0, 0.0, 0.0, 1.0}) b.push_back(Dt<T>::from(v));
        b[b.size() - 2] = ws[p];
        s.push_back(Dt<T>::from(0.9));
        s.push_back(Dt<T>::from(0.2));
        cls.push_back(static_cast<int64_t>(c * ws.size() + p));
        cls.push_back(static_cast<int64_t>(c * ws.size() + p));
      }
    std::vector<C> bc(b.size()), sc(s.size());
    for (size_t i = 0; i < b.size(); ++i) bc[i] = Dt<T>::to_c(b[i]);
    for (size_t i = 0; i < s.size(); ++i) sc[i] = Dt<T>::to_c(s[i]);
    for (bool batched : {true, false})
      for (double t : ts) {
        std::vector<int64_t> got;
        if (nms_device(b, s, batched ? &cls : nullptr, t, got)) return failures + 1;
        const auto want = reference(bc, sc, batched ? &cls : nullptr, t);
        if (got != want) {
          ++failures;
          if (g_printed++ < 20)
            std::printf("%s nms threshold edges n=%zu batched=%d thr=%g: got %zu kept, want %zu\n", dt_name<T>(),
                        s.size(), batched, t, got.size(), want.size());
        }
      }
  }
  return failures;
}

// box_iou on boxes with NaN, +-inf, zero / negative width and -0.0 coordinates
template <typename T> int box_iou_special() {
  const double specials[][4] = {
      {0, 0, 10, 10},        {5, 5, 15, 15},    {0, 0, 0, 10},         {10, 0, 0, 10},   {NAN, 0, 10, 10},
      {0, 0, 10, NAN},       {-0.0, -0.0, 1, 1}, {0, 0, INFINITY, 10}, {-INFINITY, 0, 5, 5}, {2, 2, 3, 3},
      {1e4, 1e4, 1e4 + 1, 1e4 + 1},  // 16-bit: rounding of the coordinates
  };
  std::vector<T> b;
  for (const auto& s : specials)
    for (double v : s) b.push_back(Dt<T>::from(v));
  return check_box_iou<T>(b, b, "special boxes");
}

template <typename T> int run_dtype(T, const std::vector<int>& sizes) {
  using C = typename Dt<T>::C;
  const auto t0 = std::chrono::steady_clock::now();
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> U(0.f, 1.f);
  int failures = box_iou_special<T>() + nms_threshold_edges<T>();
  for (int n : sizes) {
    for (int variant = 0; variant < 3; ++variant) {
      for (bool batched : {false, true}) {
        const float extent = variant == 1 ? 80.f : 1000.f;
        std::vector<float> bf(4 * n), sf(n);
        std::vector<int64_t> cls(n);
        for (int i = 0; i < n; ++i) {
          const float cx = U(rng) * extent, cy = U(rng) * extent, w = 4 + U(rng) * 60, h = 4 + U(rng) * 60;
          bf[4 * i] = cx - w / 2;
          bf[4 * i + 1] = cy - h / 2;
          bf[4 * i + 2] = cx + w / 2;
          bf[4 * i + 3] = cy + h / 2;
          sf[i] = variant == 2 ? std::floor(U(rng) * 3) : U(rng);  // variant 2: tied scores
          cls[i] = static_cast<int64_t>(U(rng) * 7) - 3;
          if (variant == 2 && i % 11 == 0) bf[4 * i + 2] = bf[4 * i] - 1;  // degenerate
          if (variant == 2 && i % 13 == 1 && i > 1) std::copy(&bf[0], &bf[4], &bf[4 * i]);  // identical
        }
        // in T; float64 gets coordinates that float32 cannot hold (a perturbation far below float's spacing, a
        // function of the value so that identical boxes stay identical)
        std::vector<T> b(4 * n), s(n);
        for (int i = 0; i < 4 * n; ++i)
          b[i] = Dt<T>::from(sizeof(T) == 8 ? bf[i] + 1e-7 * std::sin(static_cast<double>(bf[i])) : bf[i]);
        for (int i = 0; i < n; ++i) s[i] = Dt<T>::from(sf[i]);
        // the reference works on the stored values, in the compute type
        std::vector<C> bc(4 * n), sc(n);
        for (int i = 0; i < 4 * n; ++i) bc[i] = Dt<T>::to_c(b[i]);
        for (int i = 0; i < n; ++i) sc[i] = Dt<T>::to_c(s[i]);
        for (double thr : {0.0, 0.5, 0.9, -0.1}) {
          const auto want = reference(bc, sc, batched ? &cls : nullptr, thr);
          std::vector<int64_t> got;
          if (nms_device(b, s, batched ? &cls : nullptr, thr, got)) return failures + 1;
          if (got != want) {
            ++failures;
            if (g_printed++ < 20)
              std::printf("%s nms n=%d variant=%d batched=%d thr=%g: got %zu kept, want %zu\n", dt_name<T>(), n,
                          variant, batched, thr, got.size(), want.size());
          }
          // box_iou of the first boxes against the last
          if (!batched && thr == 0.0) {
            const int m1 = std::min(n, 100);
            failures += check_box_iou<T>(std::vector<T>(b.begin(), b.begin() + 4 * m1),
                                         std::vector<T>(b.end() - 4 * m1, b.end()), "random boxes");
          }
        }
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%-8s %s (%.1f s)\n", dt_name<T>(), failures ? "FAILED" : "ok", secs);
  return failures;
}

}  // namespace

int main() {
  use_small_emulated_device();  // the helper kernels' grid-stride loops wrap at 9000 boxes
  if (!gpu_present()) {
    std::printf("no GPU: skipped\n");
    return kSkipped;
  }
  const std::vector<int> all = {1, 5, 64, 65, 300, 512, 513, 2000, 9000}, some = {5, 64, 65, 513, 2000};
  int failures = 0;
  failures += run_dtype(float{}, all);
  failures += run_dtype(double{}, some);
  failures += run_dtype(__half{}, some);
  failures += run_dtype(__nv_bfloat16{}, some);
  CHECK(cudaDeviceSynchronize());
  std::printf(failures ? "FAILED (%d)\n" : "passed\n", failures);
  return failures ? 1 : 0;
}
