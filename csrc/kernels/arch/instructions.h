// Scalar intrinsics the kernels use, each with its device body (the CUDA intrinsic) and its host body (the same
// contract in C++, for the emulated build).  Nothing outside arch/ calls a CUDA intrinsic directly.
#pragma once

#include <cstdint>
#include <cstring>

#include "config.h"
#if defined(DEEPOPS_EMULATE)
#include "emulator.h"
#endif

#if defined(__CUDA_ARCH__)
#define DEEPOPS_DEVICE_BODY 1
#endif

namespace deepops {
namespace arch {

// Bits set in a 64-bit word (__popcll); 1-based index of the lowest set bit, 0 if none (__ffsll).
__host__ __device__ __forceinline__ int popc64(uint64_t v) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __popcll(v);
#else
  return __builtin_popcountll(v);
#endif
}
__host__ __device__ __forceinline__ int ffs64(uint64_t v) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __ffsll(static_cast<long long>(v));
#else
  return __builtin_ffsll(static_cast<long long>(v));
#endif
}

// High 32 bits of the 64-bit product (__umulhi).
__host__ __device__ __forceinline__ unsigned mulhi(unsigned a, unsigned b) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __umulhi(a, b);
#else
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Read through the read-only data cache (__ldg).
template <typename T> __host__ __device__ __forceinline__ T ldg(const T* p) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __ldg(p);
#else
  return *p;
#endif
}

// The same pointer, with its origin hidden from the compiler (a register move it cannot see through): a kernel
// that keeps per-row pointers in registers uses it so that ptr + offset stays one IMAD.WIDE, instead of the compiler
// re-deriving base + (row offset + offset) with 64-bit adds on every use.
template <typename T> __host__ __device__ __forceinline__ T* opaque_ptr(T* p) {
#if defined(DEEPOPS_DEVICE_BODY)
  asm("mov.b64 %0, %0;" : "+l"(p));
#endif
  return p;
}

// Bit casts.
__host__ __device__ __forceinline__ uint32_t float_as_uint(float v) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __float_as_uint(v);
#else
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
#endif
}
__host__ __device__ __forceinline__ float uint_as_float(uint32_t u) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __uint_as_float(u);
#else
  float v;
  std::memcpy(&v, &u, 4);
  return v;
#endif
}
__host__ __device__ __forceinline__ uint64_t double_as_uint64(double v) {
#if defined(DEEPOPS_DEVICE_BODY)
  return static_cast<uint64_t>(__double_as_longlong(v));
#else
  uint64_t u;
  std::memcpy(&u, &v, 8);
  return u;
#endif
}

// Arithmetic rounded to nearest even and never contracted into an FMA (__fadd_rn ...): what makes NMS's IoU the
// same on every device.  The host build is compiled with -ffp-contract=off, so the plain operators are exact.
__host__ __device__ __forceinline__ float add_rn(float a, float b) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
__host__ __device__ __forceinline__ double add_rn(double a, double b) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
__host__ __device__ __forceinline__ float sub_rn(float a, float b) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
__host__ __device__ __forceinline__ double sub_rn(double a, double b) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
__host__ __device__ __forceinline__ float mul_rn(float a, float b) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__host__ __device__ __forceinline__ double mul_rn(double a, double b) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
__host__ __device__ __forceinline__ float div_rn(float a, float b) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
__host__ __device__ __forceinline__ double div_rn(double a, double b) {
#if defined(DEEPOPS_DEVICE_BODY)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

// Abort the kernel (__trap); the launch fails with cudaErrorLaunchFailure.
[[noreturn]] __host__ __device__ __forceinline__ void trap(const char* why) {
#if defined(DEEPOPS_DEVICE_BODY)
  (void)why;
  __trap();
  __builtin_unreachable();
#elif defined(DEEPOPS_EMULATE)
  emu::trap(why);
#else
  (void)why;
  __builtin_trap();
#endif
}

}  // namespace arch
}  // namespace deepops
