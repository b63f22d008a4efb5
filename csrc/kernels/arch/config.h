// The toolchain seam: what a kernel source sees of CUDA, in the two builds of csrc/kernels.
//
// * nvcc (the real build): <cuda_runtime.h>, nothing else.
// * DEEPOPS_EMULATE (the same sources compiled as C++ by the host compiler, run by arch/emulator.cpp): the CUDA
//   keywords become host C++ (__global__, __device__, __host__ and __launch_bounds__ vanish; __shared__ becomes
//   `static`: one copy per kernel instantiation, valid because the emulator runs one block at a time under a
//   process-wide lock), the built-in variables threadIdx / blockIdx / blockDim / gridDim are the emulator's
//   (set for the fiber that runs), and the CUDA types come from the toolkit's host-compatible headers (cudaError_t,
//   cudaStream_t, dim3, __half, __nv_bfloat16): no CUDA runtime library is linked, so a kernel source that called
//   the runtime directly would not link.  Every instruction and intrinsic the kernels use is a function of
//   arch/ (instructions.h, warp.h, mma.h, memory.h, sync.h) with a device body and a host body.
#pragma once

#if defined(DEEPOPS_EMULATE)

#if defined(__CUDACC__)
#error "DEEPOPS_EMULATE builds the kernels with the host C++ compiler, not nvcc"
#endif

// Defined before any CUDA header: crt/host_defines.h keeps a definition it finds.
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __constant__ static
#define __launch_bounds__(...)

#include <math.h>

#include <cmath>
#include <cstdint>

#include <driver_types.h>
#include <vector_types.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

// The built-in variables of the running CUDA thread (arch/emulator.cpp sets them at every fiber switch).  Plain
// globals: the emulator runs one grid at a time in the whole process (a launch lock), so there is only ever one
// running CUDA thread.
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

// CUDA's device-side min/max/fma overloads, for the host.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
using std::fma;
using std::isfinite;

#else

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#endif
