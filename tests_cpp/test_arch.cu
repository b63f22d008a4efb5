// C++ test of the arch layer on its own (csrc/kernels/arch/), before any kernel relies on it.
//
// 1. mma.sync m16n8k16 (f16, bf16) and m16n8k8 (tf32): one warp loads its A, B, C fragments lane by lane exactly as
//    the PTX ISA's fragment tables say (written out here, independently of conv_igemm.cuh), runs arch::mma_*, and
//    stores D by the same tables; the result must equal a plain matrix product on the host.  A wrong layout in the
//    emulator (or on the GPU, in the kernel's reading of the tables) fails here.
// 2. cvt.rna.tf32.f32: round to nearest, ties away from zero, on hand-picked bit patterns (host body).
// 3. Shuffles (idx, xor; 32- and 64-bit), __syncthreads_or, popc/ffs/mulhi.
// 4. cp.async: zero fill past src_bytes, and the data is there after cp_async_wait_all.
// 4b. ldmatrix.x4 and .x4.trans: four 8 x 8 matrices of distinct 16-bit values, rows scattered in shared memory;
//     every lane's four registers checked against the PTX ISA's rule written out here.
// 5. Emulated build only: what the emulator must report (barrier divergence, a warp collective whose lane has
//    exited, a trap, a deadlock) comes back as cudaErrorLaunchFailure with a message, and a later launch still
//    works; a deliberately racy kernel (a missing barrier) gives different results under the forward and the
//    reverse schedule, which is how the two-schedule runs find such bugs; cp.async data is not visible before the
//    wait (the emulator's strictest legal schedule).
// Exit status: 0 pass, 1 failure, 77 (skipped) without a GPU in the GPU build.
#include "test_util.h"  // first: the CUDA headers come through kernels/arch/config.h

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/arch/instructions.h"
#include "kernels/arch/launch.h"
#include "kernels/arch/memory.h"
#include "kernels/arch/mma.h"
#include "kernels/arch/sync.h"
#include "kernels/arch/warp.h"

using namespace deepops;

static int failures = 0;
#define EXPECT(cond, ...)                              \
  do {                                                 \
    if (!(cond)) {                                     \
      ++failures;                                      \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                        \
      std::printf("\n");                               \
    }                                                  \
  } while (0)

// ------------------------------------------------------------------------------------------------------ mma
// 16-bit element i of a lane's A fragment of m16n8k16 (row, col), B (k, n), per the PTX ISA tables.
__host__ __device__ inline void a16_coord(int lane, int i, int& row, int& col) {
  const int g = lane >> 2, t = lane & 3;
  row = (i == 0 || i == 1 || i == 4 || i == 5) ? g : g + 8;
  col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
}
__host__ __device__ inline void b16_coord(int lane, int i, int& k, int& n) {
  const int g = lane >> 2, t = lane & 3;
  k = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
  n = g;
}
__host__ __device__ inline void c_coord(int lane, int i, int& row, int& col) {
  const int g = lane >> 2, t = lane & 3;
  row = i < 2 ? g : g + 8;
  col = t * 2 + (i & 1);
}
// m16n8k8 tf32
__host__ __device__ inline void a8_coord(int lane, int i, int& row, int& col) {
  const int g = lane >> 2, t = lane & 3;
  row = (i == 0 || i == 2) ? g : g + 8;
  col = (i < 2) ? t : t + 4;
}
__host__ __device__ inline void b8_coord(int lane, int i, int& k, int& n) {
  const int g = lane >> 2, t = lane & 3;
  k = i == 0 ? t : t + 4;
  n = g;
}

template <typename T> __host__ __device__ inline uint16_t bits16(T v) {
  uint16_t u;
  std::memcpy(&u, &v, 2);
  return u;
}

// Elements i and i + 1 of a lane's fragment of the row-major matrix M (leading dimension ld) in one 32-bit
// register, the lower index in the low half.
template <void (*Coord)(int, int, int&, int&), typename T>
__host__ __device__ inline uint32_t pack2(const T* M, int ld, int lane, int i) {
  int r, c;
  Coord(lane, i, r, c);
  const uint32_t lo = bits16(M[r * ld + c]);
  Coord(lane, i + 1, r, c);
  return lo | (uint32_t(bits16(M[r * ld + c])) << 16);
}

// A: 16 x 16 row-major, B: 16 x 8 (B[k][n] at k * 8 + n), C/D: 16 x 8 row-major
template <typename T> __global__ void mma16816_kernel(const T* A, const T* B, const float* C, float* D) {
  const int lane = threadIdx.x;
  uint32_t a[4], b[2];
  float c[4];
  for (int r = 0; r < 4; ++r) a[r] = pack2<a16_coord>(A, 16, lane, 2 * r);
  for (int r = 0; r < 2; ++r) b[r] = pack2<b16_coord>(B, 8, lane, 2 * r);
  for (int i = 0; i < 4; ++i) {
    int row, col;
    c_coord(lane, i, row, col);
    c[i] = C[row * 8 + col];
  }
  arch::mma_m16n8k16<T>(c, a, b);
  for (int i = 0; i < 4; ++i) {
    int row, col;
    c_coord(lane, i, row, col);
    D[row * 8 + col] = c[i];
  }
}

__global__ void mma1688_kernel(const float* A, const float* B, const float* C, float* D) {
  const int lane = threadIdx.x;
  uint32_t a[4], b[2];
  float c[4];
  for (int i = 0; i < 4; ++i) {
    int row, col;
    a8_coord(lane, i, row, col);
    a[i] = arch::cvt_rna_tf32(A[row * 8 + col]);
  }
  for (int i = 0; i < 2; ++i) {
    int k, n;
    b8_coord(lane, i, k, n);
    b[i] = arch::cvt_rna_tf32(B[k * 8 + n]);
  }
  for (int i = 0; i < 4; ++i) {
    int row, col;
    c_coord(lane, i, row, col);
    c[i] = C[row * 8 + col];
  }
  arch::mma_m16n8k8_tf32(c, a, b);
  for (int i = 0; i < 4; ++i) {
    int row, col;
    c_coord(lane, i, row, col);
    D[row * 8 + col] = c[i];
  }
}

template <typename T> static float to_f(T v);
template <> float to_f(__half v) { return __half2float(v); }
template <> float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> static T from_f(float v);
template <> __half from_f(float v) { return __float2half_rn(v); }
template <> __nv_bfloat16 from_f(float v) { return __float2bfloat16_rn(v); }

template <typename T> static int check_mma16(const char* name) {
  std::vector<T> A(16 * 16), B(16 * 8);
  std::vector<float> C(16 * 8), D(16 * 8);
  // small integers: every product and sum is exact in float32, so the comparison is exact
  for (int i = 0; i < 256; ++i) A[i] = from_f<T>(float((i * 7) % 11) - 5.f);
  for (int i = 0; i < 128; ++i) B[i] = from_f<T>(float((i * 5) % 9) - 4.f);
  for (int i = 0; i < 128; ++i) C[i] = float(i % 13) - 6.f;
  T *dA, *dB;
  float *dC, *dD;
  CHECK(cudaMalloc(&dA, A.size() * sizeof(T)));
  CHECK(cudaMalloc(&dB, B.size() * sizeof(T)));
  CHECK(cudaMalloc(&dC, C.size() * 4));
  CHECK(cudaMalloc(&dD, D.size() * 4));
  CHECK(cudaMemcpy(dA, A.data(), A.size() * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dB, B.data(), B.size() * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dC, C.data(), C.size() * 4, cudaMemcpyHostToDevice));
  CHECK(arch::launch<mma16816_kernel<T>>(1, 32, 0, nullptr, dA, dB, dC, dD));
  CHECK(cudaMemcpy(D.data(), dD, D.size() * 4, cudaMemcpyDeviceToHost));
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) {
      float want = C[r * 8 + n];
      for (int k = 0; k < 16; ++k) want += to_f(A[r * 16 + k]) * to_f(B[k * 8 + n]);
      EXPECT(D[r * 8 + n] == want, "%s D[%d][%d] = %g, want %g", name, r, n, D[r * 8 + n], want);
    }
  cudaFree(dA), cudaFree(dB), cudaFree(dC), cudaFree(dD);
  return 0;
}

static int check_mma_tf32() {
  std::vector<float> A(16 * 8), B(8 * 8), C(16 * 8), D(16 * 8);
  // values with more than TF32's 10 mantissa bits: the rounding of the operands must show
  for (int i = 0; i < 128; ++i) A[i] = (float((i * 7) % 11) - 5.f) * (1.f + 1.f / 4096.f);
  for (int i = 0; i < 64; ++i) B[i] = float((i * 5) % 9) - 4.f + 0.5f;
  for (int i = 0; i < 128; ++i) C[i] = float(i % 13) - 6.f;
  float *dA, *dB, *dC, *dD;
  CHECK(cudaMalloc(&dA, A.size() * 4));
  CHECK(cudaMalloc(&dB, B.size() * 4));
  CHECK(cudaMalloc(&dC, C.size() * 4));
  CHECK(cudaMalloc(&dD, D.size() * 4));
  CHECK(cudaMemcpy(dA, A.data(), A.size() * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dB, B.data(), B.size() * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dC, C.data(), C.size() * 4, cudaMemcpyHostToDevice));
  CHECK(arch::launch<mma1688_kernel>(1, 32, 0, nullptr, dA, dB, dC, dD));
  CHECK(cudaMemcpy(D.data(), dD, D.size() * 4, cudaMemcpyDeviceToHost));
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) {
      double want = C[r * 8 + n];
      for (int k = 0; k < 8; ++k) {
        // x * (1 + 2^-12) rounds to x in TF32 (the 2^-12 is below half an ulp of a 10-bit mantissa)
        const double a = std::round(A[r * 8 + k] / (1.f + 1.f / 4096.f));
        want += a * B[k * 8 + n];
      }
      EXPECT(std::fabs(D[r * 8 + n] - want) <= 1e-4 * (1 + std::fabs(want)), "tf32 D[%d][%d] = %g, want %g", r, n,
             D[r * 8 + n], want);
    }
  cudaFree(dA), cudaFree(dB), cudaFree(dC), cudaFree(dD);
  return 0;
}

static void check_tf32_rounding() {
  struct Case {
    uint32_t in, out;
  } cases[] = {
      {0x3F800000u, 0x3F800000u},  // 1.0 exact
      {0x3F800FFFu, 0x3F800000u},  // below half an ulp: down
      {0x3F801000u, 0x3F802000u},  // exactly half: away from zero
      {0xBF801000u, 0xBF802000u},  // negative half: away from zero
      {0x3F801001u, 0x3F802000u},  // above half: up
      {0x7F800000u, 0x7F800000u},  // inf unchanged
  };
  for (const Case& c : cases) {
    float f;
    std::memcpy(&f, &c.in, 4);
    const uint32_t got = arch::cvt_rna_tf32(f);  // the host body (the device one runs in mma1688_kernel)
    EXPECT(got == c.out, "cvt.rna.tf32(0x%08x) = 0x%08x, want 0x%08x", c.in, got, c.out);
  }
  float nan = std::nanf("");
  EXPECT(std::isnan(arch::uint_as_float(arch::cvt_rna_tf32(nan))), "cvt.rna.tf32(NaN) is not NaN");
}

// ------------------------------------------------------------------------------------- warp, block, memory
__global__ void collectives_kernel(int* out32, uint64_t* out64, int* any_out, int* scalars) {
  const int t = threadIdx.x, lane = t & 31;
  out32[t] = arch::shfl(0xFFFFFFFFu, t * 3, (lane + 5) & 31);          // value of lane + 5
  out64[t] = arch::shfl_xor(0xFFFFFFFFu, (uint64_t(t) << 40) | t, 3);  // value of lane ^ 3
  any_out[t] = arch::sync_threads_or(t == 37) + 2 * arch::sync_threads_or(0);
  if (t == 0) {
    scalars[0] = arch::popc64(0xF0F0000000000001ull);
    scalars[1] = arch::ffs64(0x100ull);
    scalars[2] = arch::ffs64(0);
    scalars[3] = static_cast<int>(arch::mulhi(0x80000000u, 6u));
  }
}

__global__ void cp_async_kernel(const float* src, float* out, int src_bytes) {
  __shared__ __align__(16) float stage[4 * 64];
  const int t = threadIdx.x;
  for (int i = 0; i < 4; ++i) stage[4 * t + i] = -1.f;
  arch::sync_threads();
  arch::cp_async16(&stage[4 * t], src + 4 * t, src_bytes);
  arch::cp_async_commit();
  arch::cp_async_wait_all();
  arch::sync_threads();
  for (int i = 0; i < 4; ++i) out[4 * t + i] = stage[4 * t + i];
}

// Matrix j, element (row, col) = j * 64 + row * 8 + col; row (j, row) sits at 32 * (8j + row) + 16 * ((j + row) % 2)
// bytes (16-byte aligned, not contiguous).  out[lane * 8 + j] (plain), out[lane * 8 + 4 + j] (.trans).
__global__ void ldmatrix_kernel(uint32_t* out) {
  DEEPOPS_DYNAMIC_SHARED(unsigned char, smem);
  const int lane = threadIdx.x;
  const int j = lane / 8, row = lane % 8;
  const int off = 32 * (8 * j + row) + 16 * ((j + row) % 2);
  uint16_t* r = reinterpret_cast<uint16_t*>(smem + off);
  for (int c = 0; c < 8; ++c) r[c] = static_cast<uint16_t>(j * 64 + row * 8 + c);
  arch::sync_warp();
  uint32_t plain[4], trans[4];
  arch::ldmatrix_x4(plain, smem + off);
  arch::ldmatrix_x4_trans(trans, smem + off);
  for (int q = 0; q < 4; ++q) out[lane * 8 + q] = plain[q], out[lane * 8 + 4 + q] = trans[q];
}

static int check_ldmatrix() {
  uint32_t* d;
  CHECK(cudaMalloc(&d, 32 * 8 * 4));
  CHECK(arch::launch<ldmatrix_kernel>(1, 32, 32 * 32 + 16, nullptr, d));
  std::vector<uint32_t> o(32 * 8);
  CHECK(cudaMemcpy(o.data(), d, o.size() * 4, cudaMemcpyDeviceToHost));
  auto val = [](int j, int row, int col) { return uint32_t(j * 64 + row * 8 + col); };
  for (int l = 0; l < 32; ++l)
    for (int j = 0; j < 4; ++j) {
      const int a = l / 4, b = 2 * (l % 4);
      const uint32_t plain = val(j, a, b) | (val(j, a, b + 1) << 16);
      const uint32_t trans = val(j, b, a) | (val(j, b + 1, a) << 16);
      EXPECT(o[l * 8 + j] == plain, "ldmatrix lane %d matrix %d: %08x, want %08x", l, j, o[l * 8 + j], plain);
      EXPECT(o[l * 8 + 4 + j] == trans, "ldmatrix.trans lane %d matrix %d: %08x, want %08x", l, j,
             o[l * 8 + 4 + j], trans);
    }
  cudaFree(d);
  return 0;
}

static int check_collectives() {
  constexpr int kThreads = 64;
  int *d32, *dany, *ds;
  uint64_t* d64;
  CHECK(cudaMalloc(&d32, kThreads * 4));
  CHECK(cudaMalloc(&d64, kThreads * 8));
  CHECK(cudaMalloc(&dany, kThreads * 4));
  CHECK(cudaMalloc(&ds, 16));
  CHECK(arch::launch<collectives_kernel>(1, kThreads, 0, nullptr, d32, d64, dany, ds));
  std::vector<int> o32(kThreads), any(kThreads), sc(4);
  std::vector<uint64_t> o64(kThreads);
  CHECK(cudaMemcpy(o32.data(), d32, kThreads * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(o64.data(), d64, kThreads * 8, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(any.data(), dany, kThreads * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(sc.data(), ds, 16, cudaMemcpyDeviceToHost));
  for (int t = 0; t < kThreads; ++t) {
    const int warp0 = t & ~31, lane = t & 31;
    const int src = warp0 + ((lane + 5) & 31), xsrc = warp0 + (lane ^ 3);
    EXPECT(o32[t] == src * 3, "shfl: thread %d got %d, want %d", t, o32[t], src * 3);
    EXPECT(o64[t] == ((uint64_t(xsrc) << 40) | uint64_t(xsrc)), "shfl_xor 64-bit: thread %d", t);
    EXPECT(any[t] == 1, "sync_threads_or: thread %d got %d, want 1", t, any[t]);
  }
  EXPECT(sc[0] == 9 && sc[1] == 9 && sc[2] == 0 && sc[3] == 3, "popc/ffs/mulhi: %d %d %d %d", sc[0], sc[1], sc[2],
         sc[3]);

  std::vector<float> src(4 * 64), out(4 * 64);
  for (int i = 0; i < 256; ++i) src[i] = float(i) + 0.5f;
  float *dsrc, *dout;
  CHECK(cudaMalloc(&dsrc, 1024));
  CHECK(cudaMalloc(&dout, 1024));
  CHECK(cudaMemcpy(dsrc, src.data(), 1024, cudaMemcpyHostToDevice));
  for (int bytes : {16, 8, 0}) {
    CHECK(arch::launch<cp_async_kernel>(1, 64, 0, nullptr, dsrc, dout, bytes));
    CHECK(cudaMemcpy(out.data(), dout, 1024, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 256; ++i) {
      const float want = (i % 4) * 4 < bytes ? src[i] : 0.f;
      EXPECT(out[i] == want, "cp.async %d bytes: element %d = %g, want %g", bytes, i, out[i], want);
    }
  }
  cudaFree(d32), cudaFree(d64), cudaFree(dany), cudaFree(ds), cudaFree(dsrc), cudaFree(dout);
  return 0;
}

// ---------------------------------------------------------------------------- what the emulator must report
#if defined(DEEPOPS_EMULATE)
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x == 5) return;  // exits while the others wait
  arch::sync_threads();
  out[threadIdx.x] = 1;
}
__global__ void exited_lane_kernel(int* out) {
  if (threadIdx.x == 7) return;
  out[threadIdx.x] = arch::shfl(0xFFFFFFFFu, int(threadIdx.x), 0);
}
__global__ void trap_kernel(int* out) {
  if (threadIdx.x == 3) arch::trap("test trap");
  out[threadIdx.x] = 1;
}
__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x < 32) out[threadIdx.x] = arch::shfl(0xFFFFFFFFu, 1, 0);  // warp 0 meets at a shuffle...
  else arch::sync_threads();                                               // ...warp 1 at a barrier
}
// reads a neighbour's shared value without a barrier between the write and the read
__global__ void racy_kernel(int* out) {
  __shared__ int s[64];
  s[threadIdx.x] = int(threadIdx.x) + 1;
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
  arch::sync_threads();
  s[threadIdx.x] = 0;
}
__global__ void cp_async_early_read_kernel(const float* src, float* out) {
  __shared__ __align__(16) float stage[4];
  if (threadIdx.x == 0) {
    for (int i = 0; i < 4; ++i) stage[i] = -1.f;
    arch::cp_async16(stage, src, 16);
    arch::cp_async_commit();
    out[0] = stage[0];  // before the wait: the old value in the emulator's schedule
    arch::cp_async_wait_all();
    out[1] = stage[0];
  }
}

static int expect_failure(cudaError_t e, const char* what, const char* needle) {
  const std::string msg = arch::error_string(e);
  EXPECT(e == cudaErrorLaunchFailure && msg.find(needle) != std::string::npos, "%s: got error %d '%s', want '%s'",
         what, int(e), msg.c_str(), needle);
  return 0;
}

static int check_emulator_reports() {
  int* d;
  CHECK(cudaMalloc(&d, 64 * 4));
  expect_failure(arch::launch<divergent_barrier_kernel>(1, 64, 0, nullptr, d), "divergence", "barrier divergence");
  expect_failure(arch::launch<exited_lane_kernel>(1, 32, 0, nullptr, d), "exited lane", "has exited");
  expect_failure(arch::launch<trap_kernel>(2, 64, 0, nullptr, d), "trap", "test trap");
  expect_failure(arch::launch<deadlock_kernel>(1, 64, 0, nullptr, d), "deadlock", "deadlock");
  EXPECT(arch::launch<divergent_barrier_kernel>(1, 2048, 0, nullptr, d) == cudaErrorInvalidConfiguration,
         "a 2048-thread block must be refused");
  // after abandoned fibers, a good launch still works
  if (check_collectives()) return 1;

  std::vector<int> fwd(64), rev(64);
  emu::Schedule saved;
  uint64_t seed;
  saved = emu::schedule(&seed);
  emu::set_schedule(emu::Schedule::kForward);
  CHECK(arch::launch<racy_kernel>(1, 64, 0, nullptr, d));
  CHECK(cudaMemcpy(fwd.data(), d, 256, cudaMemcpyDeviceToHost));
  emu::set_schedule(emu::Schedule::kReverse);
  CHECK(arch::launch<racy_kernel>(1, 64, 0, nullptr, d));
  CHECK(cudaMemcpy(rev.data(), d, 256, cudaMemcpyDeviceToHost));
  emu::set_schedule(saved, seed);
  EXPECT(fwd != rev, "a missing barrier must change the result between the forward and the reverse schedule");

  float *src, *out;
  CHECK(cudaMalloc(&src, 16));
  CHECK(cudaMalloc(&out, 8));
  const float v[4] = {3.f, 4.f, 5.f, 6.f};
  CHECK(cudaMemcpy(src, v, 16, cudaMemcpyHostToDevice));
  CHECK(arch::launch<cp_async_early_read_kernel>(1, 32, 0, nullptr, src, out));
  float o[2];
  CHECK(cudaMemcpy(o, out, 8, cudaMemcpyDeviceToHost));
  EXPECT(o[0] == -1.f && o[1] == 3.f, "cp.async visible before its wait (%g) or not after (%g)", o[0], o[1]);
  cudaFree(d), cudaFree(src), cudaFree(out);
  return 0;
}
#endif

int main() {
  check_tf32_rounding();
  if (!gpu_present()) {
    std::printf("no GPU: skipped\n");
    return failures ? 1 : kSkipped;
  }
  if (check_mma16<__half>("f16") || check_mma16<__nv_bfloat16>("bf16") || check_mma_tf32() || check_ldmatrix() ||
      check_collectives())
    return 1;
#if defined(DEEPOPS_EMULATE)
  if (check_emulator_reports()) return 1;
#endif
  CHECK(cudaDeviceSynchronize());
  std::printf(failures ? "FAILED (%d)\n" : "passed\n", failures);
  return failures ? 1 : 0;
}
