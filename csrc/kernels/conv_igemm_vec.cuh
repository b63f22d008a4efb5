// The vector implicit-GEMM convolution: forward and backward-input when 16 bytes of the reduction are contiguous in
// both operands (8 channels of float16 / bfloat16, 4 of float32 run as TF32).  conv.cu brings the operands there:
// the weight is transposed once per call (KRSC for forward, per-group CRSK for backward-input) and an NCHW
// activation is transposed to NHWC by a bandwidth-bound kernel (as cuDNN does); the output is written in the
// caller's layout directly.  Included by conv_igemm_tc.cu.
//
// Strategy (the GEMM and its entries are conv_common.cuh's; what differs from the element gather of
// conv_igemm.cuh is how a k-tile reaches the tensor cores):
// * a block computes a BM x BN tile of C: 128 x 128 with 4 warps, or 128 x 64 with 2 warps for GEMMs of <= 64
//   columns; every warp a 64 x 64 tile, 4 x 8 mma.sync tiles of 16 x 8 per k-step, so one fragment load of A serves
//   8 MMAs and one of B 4.  (A 128 x 64 tile of 4 warps of 64 x 32 would issue 3.7 instructions per MMA in its main
//   loop instead of 2.9: the copies and the reduction entry are per k-tile, the MMAs per warp tile.)
// * a k-tile is 64 bytes of the reduction per row, four 16-byte chunks.  Thread t always copies chunk t % 4 of rows
//   t / 4 + (threads / 4) i, so it needs one reduction entry per k-tile (two multiply-shift divisions and the affine form of
//   IgemmParams::ka, 32-bit, in registers: no table) and keeps its rows' pointers in registers;
// * global -> shared with cp.async.cg (16 bytes, zero-filled where the window leaves the tensor or the GEMM ends),
//   kStages = 4 stages in flight: the loop waits with cp.async.wait_group kStages - 2, so three k-tiles are on
//   their way while one is computed; one __syncthreads per k-tile (it also frees the stage the next copies go to);
// * shared layout: a stage is A[BM][64 bytes] then B[BN][64 bytes], rows of four chunks with the chunk index XORed
//   with bits 1-2 of the row (swizzle()): the 8 rows an ldmatrix phase reads and the 8 chunks a cp.async phase
//   writes fall in 8 different 16-byte bank groups, so neither conflicts, with no padding;
// * fragments with ldmatrix.x4: one instruction gives a whole 16 x 16 A fragment (16-bit) or 16 x 8 (TF32), or two
//   8-column B fragments.  TF32 operands go to the tensor core as stored, not rounded to TF32 first: the tensor
//   core reads their top 19 bits (truncation; the emulator does the same, see arch/mma.h), since a cvt.rna per
//   fragment register would cost half an instruction per MMA.  The element gather rounds (cvt.rna) when it stores;
//   the two differ by at most one TF32 ulp per operand;
// * epilogue: per element, through the 64-bit row / column output offsets kept in shared memory (so NCHW and NHWC
//   outputs and the bias work alike).
#pragma once

#include <cstdint>
#include <type_traits>

#include "arch/launch.h"
#include "arch/memory.h"
#include "arch/mma.h"
#include "arch/sync.h"
#include "conv_igemm.cuh"

namespace deepops {
namespace conv {

// Byte offset of 16-byte chunk c (0..3) of row r in a 64-byte-row tile.
__host__ __device__ constexpr int vec_swizzle(int r, int c) { return r * 64 + ((c ^ ((r >> 1) & 3)) << 4); }

template <typename T, bool kNarrow> struct VecSmem {
  using Tile = TileVec<kNarrow>;
  static constexpr size_t kTableBytes = (Tile::BM + Tile::BN) * sizeof(long long);  // output offsets
  static constexpr size_t kStageBytes = size_t(Tile::BM + Tile::BN) * Tile::kRowBytes;
  static constexpr size_t kBytes = kTableBytes + Tile::kStages * kStageBytes;
};

template <typename T, bool kNarrow>
__global__ void __launch_bounds__(TileVec<kNarrow>::kThreads, TileVec<kNarrow>::kMinBlocks)
    conv_igemm_vec_kernel(const IgemmParams p) {
  using Tile = TileVec<kNarrow>;
  using L = VecSmem<T, kNarrow>;
  constexpr bool kTf32 = std::is_same<T, float>::value;
  static_assert(kTf32 || sizeof(T) == 2, "16-bit or TF32");
  constexpr int BM = Tile::BM, BN = Tile::BN, WM = Tile::WM, WN = Tile::WN, kThreads = Tile::kThreads;
  constexpr int kStages = Tile::kStages, kChunks = Tile::kChunks;
  constexpr int E = 16 / sizeof(T);         // elements per chunk
  constexpr int BK = kChunks * E;           // elements of the reduction per k-tile
  constexpr int kRowsPerPass = kThreads / kChunks;
  constexpr int RA = BM / kRowsPerPass, RB = BN / kRowsPerPass;  // rows per thread
  constexpr int MI = WM / 16, NI = WN / 8;
  static_assert(BK == (kTf32 ? TileMmaTf32::BK : TileMma16::BK), "the host's k-tiles (igemm_tiles)");
  static_assert(NI % 2 == 0 && L::kTableBytes % 16 == 0 && L::kStageBytes % 16 == 0 && kRowsPerPass % 8 == 0,
                "layout");

  DEEPOPS_DYNAMIC_SHARED(unsigned char, smem);
  long long* row_out = reinterpret_cast<long long*>(smem);  // [BM]
  long long* col_out = row_out + BM;                        // [BN]
  unsigned char* stages = smem + L::kTableBytes;

  const int tid = threadIdx.x;
  const int g = p.group0 + blockIdx.z;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int ktiles = (p.Kred + BK - 1) / BK;
  const T* __restrict__ A = static_cast<const T*>(p.A);
  const T* __restrict__ B = static_cast<const T*>(p.B);

  // This thread's rows (registers): A row pointer and window origin; B row pointer and validity (bit i of b_ok).
  // The output offsets of all rows and columns go to shared memory for the epilogue.
  const int chunk = tid % kChunks, row0 = tid / kChunks;
  const T* a_ptr[RA];
  int a_h[RA], a_w[RA];
  const T* b_ptr[RB];
  unsigned b_ok = 0;
#pragma unroll
  for (int i = 0; i < RA; ++i) {
    Entry e;
    long long out;
    build_row(p, g, m0 + row0 + i * kRowsPerPass, e, out);
    a_ptr[i] = arch::opaque_ptr(A + e.off), a_h[i] = e.h, a_w[i] = e.w;
    if (chunk == 0) row_out[row0 + i * kRowsPerPass] = out;
  }
#pragma unroll
  for (int i = 0; i < RB; ++i) {
    Entry e;
    long long out;
    build_col(p, g, n0 + row0 + i * kRowsPerPass, e, out);
    b_ptr[i] = arch::opaque_ptr(B + e.off);
    b_ok |= (e.h == 0 ? 1u : 0u) << i;  // build_col marks columns past the GEMM with kInvalidCoord
    if (chunk == 0) col_out[row0 + i * kRowsPerPass] = out;
  }

  // The copies of k-tile kt into shared stage `stage` (one commit group, empty past the end).  The reduction index
  // of this thread's chunk is split as (r, s, c) with c fastest (NHWC) and its entry is 32-bit (the launcher checked
  // vec_offsets_fit); past Kred the chunk is zero-filled.  A zero-filled cp.async reads nothing, so its source
  // pointer need not be valid.
  auto issue = [&](int kt, int stage) {
    if (kt < ktiles) {
      const int kk = kt * BK + chunk * E;
      int c, rs, i, j, kh, kw, ka, kb;
      p.div_ch.divmod(kk, rs, c);
      p.div_s.divmod(rs, i, j);
      window_k(p.ka, c, i, j, kh, kw, ka, kb);
      const bool k_ok = kk < p.Kred;
      // rows row0 + r * kRowsPerPass keep the swizzle of row0 (kRowsPerPass is a multiple of 8)
      unsigned char* dst = stages + stage * L::kStageBytes + vec_swizzle(row0, chunk);
      constexpr int kPassBytes = kRowsPerPass * Tile::kRowBytes;
#pragma unroll
      for (int r = 0; r < RA; ++r) {
        const int h = a_h[r] + kh, w = a_w[r] + kw;
        const bool ok = k_ok && static_cast<unsigned>(h) < static_cast<unsigned>(p.a_lim_h) &&
                        static_cast<unsigned>(w) < static_cast<unsigned>(p.a_lim_w);
        arch::cp_async16(dst + r * kPassBytes, a_ptr[r] + ka, ok ? 16 : 0);
      }
#pragma unroll
      for (int r = 0; r < RB; ++r) {
        const bool ok = k_ok && ((b_ok >> r) & 1u);
        arch::cp_async16(dst + BM * Tile::kRowBytes + r * kPassBytes, b_ptr[r] + kb, ok ? 16 : 0);
      }
    }
    arch::cp_async_commit();
  };

  const int warp = tid / 32, lane = tid % 32;
  const int wm = warp % Tile::kWarpsM, wn = warp / Tile::kWarpsM;
  // ldmatrix row addresses of this lane (byte offsets in a stage) for k-step ks: A matrices (rows 0-7 | 8-15) x
  // (chunk 0 | 1) of the step; B matrices (columns 0-7, chunk 0 | 1), (columns 8-15, chunk 0 | 1).  Rows advance by
  // 16 per fragment, which leaves the swizzle bits unchanged, so one offset per k-step serves every fragment.
  int a_off[2], b_off[2];
#pragma unroll
  for (int ks = 0; ks < 2; ++ks) {
    a_off[ks] = vec_swizzle(wm * WM + lane % 16, 2 * ks + lane / 16);
    b_off[ks] = BM * Tile::kRowBytes + vec_swizzle(wn * WN + (lane / 16) * 8 + lane % 8, 2 * ks + (lane / 8) % 2);
  }

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[i][j][v] = 0.f;

  auto compute = [&](int stage) {
    const unsigned char* s = stages + stage * L::kStageBytes;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {  // two MMA k-steps of 32 bytes per k-tile
      uint32_t af[MI][4], bf[NI][2];
      const unsigned char* sa = s + a_off[ks];  // then + 16 rows per fragment: an immediate offset
      const unsigned char* sb = s + b_off[ks];
#pragma unroll
      for (int i = 0; i < MI; ++i) arch::ldmatrix_x4(af[i], sa + i * 16 * Tile::kRowBytes);
#pragma unroll
      for (int j = 0; j < NI / 2; ++j) {
        uint32_t r[4];
        arch::ldmatrix_x4(r, sb + j * 16 * Tile::kRowBytes);
        bf[2 * j][0] = r[0], bf[2 * j][1] = r[1], bf[2 * j + 1][0] = r[2], bf[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) {
          if constexpr (kTf32) arch::mma_m16n8k8_tf32(acc[i][j], af[i], bf[j]);
          else arch::mma_m16n8k16<T>(acc[i][j], af[i], bf[j]);
        }
    }
  };

  // Pipeline: kStages - 1 k-tiles in flight before the loop; each iteration waits for the oldest, then refills the
  // stage computed in the previous iteration (free once every thread passed this iteration's barrier).
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) issue(st, st);
  for (int kt = 0; kt < ktiles; ++kt) {
    arch::cp_async_wait<kStages - 2>();
    arch::sync_threads();
    issue(kt + kStages - 1, (kt + kStages - 1) % kStages);
    compute(kt % kStages);
  }
  arch::cp_async_wait_all();  // the empty trailing groups: nothing may stay in flight at exit
  arch::sync_threads();        // row_out / col_out written by other threads

  const int bias_base = p.mode == kFwd ? g * p.Kg : g * p.Cg;
  const T* __restrict__ bias = static_cast<const T*>(p.bias);
  T* __restrict__ out = static_cast<T*>(p.out);
  const int gid = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) {
        const int r = wm * WM + i * 16 + gid + 8 * (v / 2), c = wn * WN + j * 8 + t4 * 2 + v % 2;
        if (m0 + r >= p.M || n0 + c >= p.Ncol) continue;
        float x = acc[i][j][v];
        if (bias) x += to_compute(bias[bias_base + n0 + c]);
        out[row_out[r] + col_out[c]] = from_compute<T>(x);
      }
}

// Launch over p's grid (ceil(M / BM), ceil(Ncol / BN), group_count); p.splits must be 1.
template <typename T, bool kNarrow> cudaError_t launch_igemm_vec(const IgemmParams& p, cudaStream_t stream) {
  using Tile = TileVec<kNarrow>;
  constexpr size_t smem = VecSmem<T, kNarrow>::kBytes;
  constexpr auto kernel = conv_igemm_vec_kernel<T, kNarrow>;
  if (p.splits != 1) return cudaErrorInvalidValue;
  cudaError_t err = arch::allow_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  const long long gx = (static_cast<long long>(p.M) + Tile::BM - 1) / Tile::BM;
  const long long gy = (static_cast<long long>(p.Ncol) + Tile::BN - 1) / Tile::BN;
  if (gx > INT_MAX || gy > arch::kMaxGridYZ || p.group_count > arch::kMaxGridYZ) return cudaErrorInvalidValue;
  return arch::launch<kernel>(dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy),
                                   static_cast<unsigned>(p.group_count)),
                              Tile::kThreads, smem, stream, p);
}

}  // namespace conv
}  // namespace deepops
