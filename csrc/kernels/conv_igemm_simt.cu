// FFMA / DFMA instantiations of the implicit-GEMM convolution (conv_igemm.cuh): float32 without TF32 (exact
// float32 products, as cuDNN with allow_tf32 off) and float64.  Tiles: TileSimtF32 (128 x 128 x 16, 8 x 8 outputs
// per thread) and TileSimtF64 (64 x 64 x 16, 4 x 4 per thread) in conv_common.cuh, 256 threads.  Two kernels, one
// per dtype: every pass is the same plain gather (backward-input with stride > 1 included, as one GEMM per output
// phase: kDgradPhase in conv_common.cuh).
#include "conv_igemm.cuh"

namespace deepops {
namespace conv {

cudaError_t launch_igemm_simt(DType dt, const IgemmParams& p, cudaStream_t stream) {
  switch (dt) {
    case DType::kFloat32: return launch_igemm_cfg<float, kOpSimt, false>(p, stream);
    case DType::kFloat64: return launch_igemm_cfg<double, kOpSimt, false>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace conv
}  // namespace deepops
