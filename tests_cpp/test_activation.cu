// C++ test of the activation launchers against a host reference (needs a GPU; exits 77 = skipped without one).
// Sizes cover the vector body, the scalar tail and the unaligned (offset) path.
#include <cmath>
#include <cstdio>
#include <vector>

#include "test_util.h"
#include "kernels/activation.h"


int main() {
  if (!gpu_present()) {
    std::printf("no GPU: skipped\n");
    return kSkipped;
  }
  int failures = 0;
  for (long n : {1L, 3L, 4L, 1000L, 4099L, 1L << 20}) {
    for (int offset : {0, 1}) {
      std::vector<float> h(n + offset), out(n + offset, -7.f);
      for (long i = 0; i < n + offset; ++i) h[i] = std::sin(0.37f * i) * 5.f;
      float *dx, *dy;
      CHECK(cudaMalloc(&dx, (n + offset) * sizeof(float)));
      CHECK(cudaMalloc(&dy, (n + offset) * sizeof(float)));
      CHECK(cudaMemcpy(dx, h.data(), (n + offset) * sizeof(float), cudaMemcpyHostToDevice));
      CHECK(deepops::leaky_relu_forward(deepops::DType::kFloat32, dx + offset, dy + offset, n, 0.25, nullptr));
      CHECK(cudaMemcpy(out.data(), dy, (n + offset) * sizeof(float), cudaMemcpyDeviceToHost));
      for (long i = offset; i < n + offset; ++i) {
        float want = h[i] > 0 ? h[i] : h[i] * 0.25f;
        if (out[i] != want) {
          if (failures++ < 5) std::printf("n=%ld offset=%d i=%ld got %g want %g\n", n, offset, i, out[i], want);
        }
      }
      CHECK(deepops::relu_forward(deepops::DType::kFloat32, dx + offset, dx + offset, n, nullptr));  // in place
      CHECK(cudaMemcpy(out.data(), dx, (n + offset) * sizeof(float), cudaMemcpyDeviceToHost));
      for (long i = offset; i < n + offset; ++i)
        if (out[i] != (h[i] < 0 ? 0.f : h[i]) && failures++ < 5) std::printf("relu_ n=%ld i=%ld\n", n, i);
      cudaFree(dx);
      cudaFree(dy);
    }
  }
  std::printf(failures ? "FAILED (%d)\n" : "passed\n", failures);
  return failures ? 1 : 0;
}
