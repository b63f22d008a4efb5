// Tensor-core instantiations of the implicit-GEMM convolution (conv_igemm.cuh): float16 and bfloat16 with
// mma.sync.m16n8k16 (float32 accumulation), and float32 as TF32 with mma.sync.m16n8k8 (taken only when the caller
// allows TF32).  Tiles in conv_common.cuh: TileMma16 / TileMmaTf32 (128 x 128, BK 32 / 16, 8 warps of 64 x 32) and
// the narrow TileMma16Narrow / TileMmaTf32Narrow (128 x 64, 8 warps of 32 x 32) for GEMMs of <= 64 columns.
// Twenty-one kernels: three compute kinds x {wide, narrow}, each as the element-gather kernel (conv_igemm.cuh) and
// as the 16-byte vector kernel (conv_igemm_vec.cuh: cp.async, ldmatrix, 4 stages), plus the vector backward-weight
// kernels of each compute kind (ldmatrix.trans for float16 and bfloat16, 16-byte shared loads for TF32): dw = dy x
// (wide, narrow) and dw^T = x^T dy (narrow: it is taken for K/g <= 64).
#include "conv_igemm.cuh"
#include "conv_igemm_vec.cuh"

namespace deepops {
namespace conv {

namespace {
template <typename T, int Op>
cudaError_t pick(bool narrow, bool vec, const IgemmParams& p, cudaStream_t stream) {
  if (vec && (p.mode == kWgrad || p.mode == kWgradT)) {
    if (p.mode == kWgrad)
      return narrow ? launch_igemm_vec<T, true, kVecWgrad>(p, stream) : launch_igemm_vec<T, false, kVecWgrad>(p, stream);
    if (narrow) return launch_igemm_vec<T, true, kVecWgradT>(p, stream);  // kWgradT has K/g <= 64 columns
    return cudaErrorInvalidValue;
  }
  if (vec) return narrow ? launch_igemm_vec<T, true>(p, stream) : launch_igemm_vec<T, false>(p, stream);
  return narrow ? launch_igemm_cfg<T, Op, true>(p, stream) : launch_igemm_cfg<T, Op, false>(p, stream);
}
}  // namespace

cudaError_t launch_igemm_tc(DType dt, bool narrow, bool vec, const IgemmParams& p, cudaStream_t stream) {
  switch (dt) {
    case DType::kFloat16: return pick<__half, kOpMma16>(narrow, vec, p, stream);
    case DType::kBFloat16: return pick<__nv_bfloat16, kOpMma16>(narrow, vec, p, stream);
    case DType::kFloat32: return pick<float, kOpTf32>(narrow, vec, p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace conv
}  // namespace deepops
