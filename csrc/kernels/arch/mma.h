// Tensor-core matrix multiply-accumulate (sm_80's mma.sync) and the TF32 rounding, after CUTLASS's mma_sm80.h.
//
//   mma_m16n8k16<T>(c, a, b):  D(16x8, f32) = A(16x16, T row-major) * B(16x8, T col-major) + C,  T = __half | bf16
//   mma_m16n8k8_tf32(c, a, b): D(16x8, f32) = A(16x8, tf32) * B(8x8, tf32) + C
//
// Each of the 32 lanes holds its fragment of A, B and C in registers; which element sits where is the PTX ISA's
// layout ("Matrix Fragments for mma.m16n8k16 / mma.m16n8k8"; groupID = lane / 4, tig = lane % 4):
//   m16n8k16 A: a_i (two per 32-bit register, lower index in the low half) at row groupID + 8*((i/2)%2), column
//               2*tig + (i%2) + 8*(i/4);  B: b_i at k = 2*tig + (i%2) + 8*(i/2), column groupID;
//   m16n8k8  A: a_i at row groupID + 8*(i%2), column tig + 4*(i/2);  B: b_i at k = tig + 4*i, column groupID;
//   C/D (both): c_i at row groupID + 8*(i/2), column 2*tig + (i%2).
// The emulator gathers the 32 lanes' registers by exactly these tables, multiplies the matrices (products summed
// in double, then rounded once to float: the hardware's order inside one mma is unspecified) and scatters D back,
// so a kernel that maps its fragments wrongly computes wrong numbers.  TF32 operands are truncated to their 19
// bits as the tensor core reads them.
//
// No `volatile` on the mma: it has no side effect beyond its outputs, and volatile would pin it in program order
// against ptxas's scheduling.  (The cp.async instructions in memory.h keep theirs: they write memory.)
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "config.h"
#include "instructions.h"
#if defined(DEEPOPS_EMULATE)
#include "emulator.h"
#endif

namespace deepops {
namespace arch {

// Rounds to the nearest TF32 value, ties away from zero (cvt.rna.tf32.f32); returns the bits as a 32-bit float.
__host__ __device__ __forceinline__ uint32_t cvt_rna_tf32(float x) {
#if defined(__CUDA_ARCH__)
  uint32_t u;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(x));
  return u;
#else
  uint32_t u = float_as_uint(x);
  if ((u & 0x7F800000u) == 0x7F800000u) return u;  // inf and NaN unchanged
  return (u + 0x1000u) & ~0x1FFFu;                  // + half an ulp of TF32, then truncate: ties away from zero
#endif
}

#if defined(DEEPOPS_EMULATE)
namespace detail {
struct MmaLane {
  float* c;
  const uint32_t* a;
  const uint32_t* b;
};
inline float half_bits(uint32_t reg, int hi, __half) {
  const uint16_t h = static_cast<uint16_t>(hi ? reg >> 16 : reg & 0xFFFFu);
  __half_raw r;
  r.x = h;
  return __half2float(__half(r));
}
inline float half_bits(uint32_t reg, int hi, __nv_bfloat16) {
  const uint32_t h = hi ? reg >> 16 : reg & 0xFFFFu;
  return uint_as_float(h << 16);
}

// D = A*B + C over the gathered matrices, scattered to the lanes' c registers.
template <int K> void mma_finish(void* const* lanes, const float (&A)[16][K], const float (&B)[K][8]) {
  for (int lane = 0; lane < 32; ++lane) {
    auto* l = static_cast<MmaLane*>(lanes[lane]);
    const int g = lane >> 2, t = lane & 3;
    float d[4];
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i / 2), col = 2 * t + (i % 2);
      double s = l->c[i];
      for (int k = 0; k < K; ++k) s += static_cast<double>(A[row][k]) * static_cast<double>(B[k][col]);
      d[i] = static_cast<float>(s);
    }
    std::memcpy(l->c, d, sizeof d);
  }
}

template <typename T> void mma16816_resolve(void* const* lanes, unsigned) {
  float A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const auto* l = static_cast<const MmaLane*>(lanes[lane]);
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 8; ++i)
      A[g + 8 * ((i / 2) % 2)][2 * t + (i % 2) + 8 * (i / 4)] = half_bits(l->a[i / 2], i % 2, T{});
    for (int i = 0; i < 4; ++i) B[2 * t + (i % 2) + 8 * (i / 2)][g] = half_bits(l->b[i / 2], i % 2, T{});
  }
  mma_finish<16>(lanes, A, B);
}

inline void mma1688_tf32_resolve(void* const* lanes, unsigned) {
  float A[16][8], B[8][8];
  for (int lane = 0; lane < 32; ++lane) {
    const auto* l = static_cast<const MmaLane*>(lanes[lane]);
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; ++i) A[g + 8 * (i % 2)][t + 4 * (i / 2)] = uint_as_float(l->a[i] & ~0x1FFFu);
    for (int i = 0; i < 2; ++i) B[t + 4 * i][g] = uint_as_float(l->b[i] & ~0x1FFFu);
  }
  mma_finish<8>(lanes, A, B);
}
}  // namespace detail
#endif

// T = __half or __nv_bfloat16 (the asm names the input type; everything else is shared).
template <typename T>
__device__ __forceinline__ void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  constexpr bool kF16 = std::is_same<T, __half>::value;
  static_assert(kF16 || std::is_same<T, __nv_bfloat16>::value, "f16 or bf16 inputs");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (kF16)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
  (void)c, (void)a, (void)b;
  trap("mma.sync needs sm_80");
#elif defined(DEEPOPS_EMULATE)
  detail::MmaLane l{c, a, b};
  emu::warp_collective(0xFFFFFFFFu, detail::mma16816_resolve<T>, &l,
                       kF16 ? "mma.sync.m16n8k16.f16" : "mma.sync.m16n8k16.bf16");
#else
  (void)c, (void)a, (void)b;
#endif
}

__device__ __forceinline__ void mma_m16n8k8_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
  (void)c, (void)a, (void)b;
  trap("mma.sync needs sm_80");
#elif defined(DEEPOPS_EMULATE)
  detail::MmaLane l{c, a, b};
  emu::warp_collective(0xFFFFFFFFu, detail::mma1688_tf32_resolve, &l, "mma.sync.m16n8k8.tf32");
#else
  (void)c, (void)a, (void)b;
#endif
}

}  // namespace arch
}  // namespace deepops
