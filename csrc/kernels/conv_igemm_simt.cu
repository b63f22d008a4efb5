// FFMA / DFMA instantiations of the implicit-GEMM convolution (conv_igemm.cuh): float32 without TF32 (exact
// float32 products, as cuDNN with allow_tf32 off) and float64.  Tiles: TileSimtF32 (128 x 128 x 32, 8 x 8 outputs
// per thread) and TileSimtF64 (64 x 64 x 16, 4 x 4 per thread) in conv_common.cuh, 256 threads.  Six kernels: per
// dtype, one per load mapping (LoadMap in conv_igemm.cuh: which side of each operand neighbouring threads take,
// fixed at compile time); every pass is the same plain gather (backward-input with stride > 1 included, as one
// GEMM per output phase: kDgradPhase in conv_common.cuh).
#include "conv_igemm.cuh"

namespace deepops {
namespace conv {

namespace {
template <typename T> cudaError_t launch_mapped(const IgemmParams& p, cudaStream_t stream) {
  if (!p.a_kfast && p.b_kfast) return launch_igemm_cfg<T, kOpSimt, false, kMapRowsK>(p, stream);
  if (p.a_kfast && p.b_kfast) return launch_igemm_cfg<T, kOpSimt, false, kMapKK>(p, stream);
  if (!p.a_kfast && !p.b_kfast) return launch_igemm_cfg<T, kOpSimt, false, kMapRowsRows>(p, stream);
  return cudaErrorInvalidValue;  // A k-fast with B rows-fast: no pass has it (make_igemm)
}
}  // namespace

cudaError_t launch_igemm_simt(DType dt, const IgemmParams& p, cudaStream_t stream) {
  switch (dt) {
    case DType::kFloat32: return launch_mapped<float>(p, stream);
    case DType::kFloat64: return launch_mapped<double>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace conv
}  // namespace deepops
