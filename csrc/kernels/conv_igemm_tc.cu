// Tensor-core instantiations of the implicit-GEMM convolution (conv_igemm.cuh): float16 and bfloat16 with
// mma.sync.m16n8k16 (float32 accumulation), and float32 as TF32 with mma.sync.m16n8k8 (taken only when the caller
// allows TF32).  Tiles: TileMma16 / TileMmaTf32 in conv_common.cuh (128 x 128, BK 32 / 16, 256 threads = 8 warps
// of 64 x 32).  Six kernels: three compute kinds x {plain gather, strided backward-input gather}.
#include "conv_igemm.cuh"

namespace deepops {
namespace conv {

cudaError_t launch_igemm_tc(DType dt, bool strided, const IgemmParams& p, cudaStream_t stream) {
  switch (dt) {
    case DType::kFloat16:
      return strided ? launch_igemm_cfg<__half, kOpMma16, true>(p, stream)
                     : launch_igemm_cfg<__half, kOpMma16, false>(p, stream);
    case DType::kBFloat16:
      return strided ? launch_igemm_cfg<__nv_bfloat16, kOpMma16, true>(p, stream)
                     : launch_igemm_cfg<__nv_bfloat16, kOpMma16, false>(p, stream);
    case DType::kFloat32:
      return strided ? launch_igemm_cfg<float, kOpTf32, true>(p, stream)
                     : launch_igemm_cfg<float, kOpTf32, false>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace conv
}  // namespace deepops
