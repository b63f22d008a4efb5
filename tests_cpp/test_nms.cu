// C++ test of the NMS and box IoU launchers against a host reference with torchvision's CPU arithmetic (needs a
// GPU; exits 77 = skipped without one).  Sizes cover the single-block path (<= 512 boxes) and the tiled path, plain
// and batched, with tied scores, identical and degenerate boxes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "test_util.h"
#include "kernels/nms.h"


// torchvision's loop: stable descending order, kept box i suppresses later j of its class when IoU > thr.
static std::vector<int64_t> reference(const std::vector<float>& b, const std::vector<float>& s,
                                      const std::vector<int64_t>* cls, double thr) {
  const int n = static_cast<int>(s.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return s[a] > s[c]; });
  std::vector<float> area(n);
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
      const float xx1 = std::max(b[4 * i], b[4 * j]), yy1 = std::max(b[4 * i + 1], b[4 * j + 1]);
      const float xx2 = std::min(b[4 * i + 2], b[4 * j + 2]), yy2 = std::min(b[4 * i + 3], b[4 * j + 3]);
      const float w = std::max(0.f, xx2 - xx1), h = std::max(0.f, yy2 - yy1);
      const float inter = w * h;
      const float ovr = inter / (area[i] + area[j] - inter);
      if (ovr > thr) sup[j] = 1;
    }
  }
  return keep;
}

int main() {
  if (!gpu_present()) {
    std::printf("no GPU: skipped\n");
    return kSkipped;
  }
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> U(0.f, 1.f);
  int failures = 0;
  for (int n : {1, 5, 64, 65, 300, 512, 513, 2000, 9000}) {
    for (int variant = 0; variant < 3; ++variant) {
      for (bool batched : {false, true}) {
        const float extent = variant == 1 ? 80.f : 1000.f;
        std::vector<float> b(4 * n), s(n);
        std::vector<int64_t> cls(n);
        for (int i = 0; i < n; ++i) {
          const float cx = U(rng) * extent, cy = U(rng) * extent, w = 4 + U(rng) * 60, h = 4 + U(rng) * 60;
          b[4 * i] = cx - w / 2;
          b[4 * i + 1] = cy - h / 2;
          b[4 * i + 2] = cx + w / 2;
          b[4 * i + 3] = cy + h / 2;
          s[i] = variant == 2 ? std::floor(U(rng) * 3) : U(rng);  // variant 2: tied scores
          cls[i] = static_cast<int64_t>(U(rng) * 7) - 3;
          if (variant == 2 && i % 11 == 0) b[4 * i + 2] = b[4 * i] - 1;  // degenerate
          if (variant == 2 && i % 13 == 1 && i > 1) std::copy(&b[0], &b[4], &b[4 * i]);  // identical
        }
        for (double thr : {0.0, 0.5, 0.9, -0.1}) {
          const auto want = reference(b, s, batched ? &cls : nullptr, thr);
          float *db, *ds;
          int64_t *dc, *dk, *dn;
          void* ws = nullptr;
          const size_t wsb = deepops::nms_workspace_bytes(deepops::DType::kFloat32, n, batched);
          CHECK(cudaMalloc(&db, 16 * n));
          CHECK(cudaMalloc(&ds, 4 * n));
          CHECK(cudaMalloc(&dc, 8 * n));
          CHECK(cudaMalloc(&dk, 8 * n));
          CHECK(cudaMalloc(&dn, 8));
          if (wsb) CHECK(cudaMalloc(&ws, wsb));
          CHECK(cudaMemcpy(db, b.data(), 16 * n, cudaMemcpyHostToDevice));
          CHECK(cudaMemcpy(ds, s.data(), 4 * n, cudaMemcpyHostToDevice));
          CHECK(cudaMemcpy(dc, cls.data(), 8 * n, cudaMemcpyHostToDevice));
          CHECK(deepops::nms(deepops::DType::kFloat32, db, ds, batched ? dc : nullptr, n, thr, ws, wsb, dk, dn,
                             nullptr));
          int64_t got_n = -1;
          CHECK(cudaMemcpy(&got_n, dn, 8, cudaMemcpyDeviceToHost));
          std::vector<int64_t> got(std::max<int64_t>(got_n, 0));
          if (got_n > 0) CHECK(cudaMemcpy(got.data(), dk, 8 * got_n, cudaMemcpyDeviceToHost));
          if (got != want && failures++ < 10)
            std::printf("nms n=%d variant=%d batched=%d thr=%g: got %lld kept, want %zu\n", n, variant, batched, thr,
                        static_cast<long long>(got_n), want.size());
          // box_iou of the first boxes against the last
          if (!batched && thr == 0.0) {
            const int m1 = std::min(n, 100);
            float* dout;
            CHECK(cudaMalloc(&dout, 4 * m1 * m1));
            CHECK(deepops::box_iou(deepops::DType::kFloat32, db, db + 4 * (n - m1), m1, m1, dout, nullptr));
            std::vector<float> out(m1 * m1);
            CHECK(cudaMemcpy(out.data(), dout, 4 * m1 * m1, cudaMemcpyDeviceToHost));
            for (int i = 0; i < m1; ++i)
              for (int j = 0; j < m1; ++j) {
                const float* p = &b[4 * i];
                const float* q = &b[4 * (n - m1 + j)];
                const float w = std::max(0.f, std::min(p[2], q[2]) - std::max(p[0], q[0]));
                const float h = std::max(0.f, std::min(p[3], q[3]) - std::max(p[1], q[1]));
                const float a1 = (p[2] - p[0]) * (p[3] - p[1]), a2 = (q[2] - q[0]) * (q[3] - q[1]);
                const float want_iou = w * h / (a1 + a2 - w * h);
                const float g = out[i * m1 + j];
                if (!(g == want_iou || (std::isnan(g) && std::isnan(want_iou))) && failures++ < 10)
                  std::printf("box_iou n=%d (%d, %d): got %g want %g\n", n, i, j, g, want_iou);
              }
            cudaFree(dout);
          }
          cudaFree(db);
          cudaFree(ds);
          cudaFree(dc);
          cudaFree(dk);
          cudaFree(dn);
          if (ws) cudaFree(ws);
        }
      }
    }
  }
  std::printf(failures ? "FAILED (%d)\n" : "passed\n", failures);
  return failures ? 1 : 0;
}
