// Declarations shared by the convolution sources (conv.cu: path choice and parameter set-up; conv_igemm_*.cu: the
// implicit-GEMM kernels; conv_direct.cu: depthwise, bias and reduction kernels).  Nothing here is public.
//
// Every convolution pass that is not depthwise is one implicit GEMM per group, C[M x Ncol] = A[M x Kred] B[Kred x
// Ncol], whose operands are gathered on the fly from the tensors (no im2col buffer):
//
//   pass       M (rows)          Ncol (columns)        Kred (reduction)      A       B       C
//   forward    N*P*Q pixels      K/g out channels      C/g*R*S               x       w       y (+ bias)
//   bwd input  N*H*W pixels      C/g in channels       K/g*R*S               dy      w       dx (+ bias)
//   bwd weight K/g out channels  C/g*R*S               N*P*Q                 dy      x       dw (split-K)
//   (or, K/g <= 64, transposed:  rows C/g*R*S, columns K/g, A = x, B = dy)
//
// An operand element is (row entry) + (reduction entry): each entry is a 64-bit offset plus two window coordinates
// (h, w), so that the bounds test of the zero padding is "0 <= row.h + k.h < limit_h" and the address is
// row.off + k.off.  Row entries are built once per block, reduction entries once per k-tile (BK of them), both in
// shared memory, so the per-element cost of the gather is two shared loads, two adds, a compare and the load.
// Backward-input with stride > 1 runs per output phase (kDgradPhase below), each a plain window gather.
// Reduction index orders follow the layout so that neighbouring threads read
// neighbouring addresses: (r, s, c) for NHWC (c fastest), (c, r, s) for NCHW.
#pragma once

#include <climits>
#include <cstdint>

#include "arch/instructions.h"
#include "common.h"
#include "conv.h"

namespace deepops {
namespace conv {

// Division by a run-time constant d >= 1 for dividends 0 <= n < 2^31 by a multiply-high and a shift
// (Granlund & Montgomery): shr = ceil(log2 d), mul = floor(2^32 (2^shr - d) / d) + 1, n / d = (mulhi(n, mul) + n)
// >> shr.  (mulhi(n, mul) + n < 2^32 because mul < 2^32 and n < 2^31.)
struct FastDivmod {
  unsigned d = 1, mul = 1, shr = 0;
  FastDivmod() = default;
  explicit FastDivmod(int64_t divisor) {
    d = static_cast<unsigned>(divisor < 1 ? 1 : divisor);
    shr = 0;
    while ((uint64_t(1) << shr) < d) ++shr;
    mul = static_cast<unsigned>(((uint64_t(1) << 32) * ((uint64_t(1) << shr) - d)) / d + 1);
  }
  __host__ __device__ __forceinline__ int div(int n) const {
    const unsigned t = arch::mulhi(static_cast<unsigned>(n), mul);
    return static_cast<int>((t + static_cast<unsigned>(n)) >> shr);
  }
  __host__ __device__ __forceinline__ void divmod(int n, int& q, int& r) const {
    q = div(n);
    r = n - q * static_cast<int>(d);
  }
};

// kWgradT: backward-weight as dw^T = x^T dy (rows C/g*R*S, columns K/g), taken when K/g <= 64 so that the small
// dimension is the columns (narrow tiles) instead of half-empty 128-row tiles.
// kDgradPhase: backward-input with stride > 1, one launch per output phase (h % stride_h, w % stride_w): within
// a phase the kernel taps that reach it form an arithmetic progression r = r0 + j * rstep, so the phase is a plain
// (window) GEMM over only the taps that contribute: no divisibility test, no multiplications by zero.
enum Mode : int { kFwd = 0, kDgrad = 1, kWgrad = 2, kWgradT = 3, kDgradPhase = 4 };

// Window coordinate of an entry that makes every element it takes part in fall outside the tensor: row and
// reduction entries hold coordinates well inside (-2^30, 2^30), so any sum or difference with this stays invalid.
constexpr int kInvalidCoord = -(1 << 30);

// The reduction entry of the window passes as an affine function of kk's split (c, i, j) (split_crs: c the channel
// of the reduction, (i, j) the tap, or the phase's tap index): window coordinates (h0 + i*hstep, w0 + j*wstep), A
// offset c*a_c + h*a_h + w*a_w, B offset b0 + c*b_c + i*b_i + j*b_j.  set_k_affine (conv.cu) derives it from the
// strides and the pass once per launch, so the kernels hold one formula for forward, backward-input and its phases.
struct KAffine {
  int h0 = 0, hstep = 0, w0 = 0, wstep = 0;
  long long a_c = 0, a_h = 0, a_w = 0;
  long long b0 = 0, b_c = 0, b_i = 0, b_j = 0;
};

// One side (row or reduction) of an operand element; 16-byte aligned so that a kernel reads one from its shared
// table with a single 16-byte load.
struct alignas(16) Entry {
  long long off;
  int h, w;
};

// The entry of a row, column or reduction index past the GEMM's edge: every element it takes part in is zero.
__host__ __device__ constexpr Entry invalid_entry() { return Entry{0, kInvalidCoord, kInvalidCoord}; }

// Everything an implicit-GEMM launch needs; built on the host by conv.cu (see the table above).
struct IgemmParams {
  int mode = kFwd;
  bool nhwc = false;
  int M = 0, Ncol = 0, Kred = 0;        // per-group GEMM sizes
  int N = 0, C = 0, H = 0, W = 0, K = 0, R = 0, S = 0, P = 0, Q = 0;
  int Cg = 0, Kg = 0, groups = 1;
  int sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  long long xN = 0, xC = 0, xH = 0, xW = 0;  // element strides of x / dx
  long long yN = 0, yC = 0, yH = 0, yW = 0;  // of y / dy
  long long wK = 0, wC = 0, wR = 0, wS = 0;  // of w / dw
  long long wG = 0;                          // elements of one group's weight (backward-input's column entries)
  FastDivmod div_plane, div_row;  // pixel index -> (n, a, b): plane = A*B (P*Q or H*W), row = B (Q or W)
  FastDivmod div_ch, div_rs, div_s;  // (c, r, s) index: channel count (Cg or Kg), R*S, S
  int a_lim_h = INT_MAX, a_lim_w = INT_MAX, b_lim_h = INT_MAX, b_lim_w = INT_MAX;  // window limits per operand
  bool a_kfast = true, b_kfast = true;  // load mapping: neighbouring threads along the reduction (or the rows)
  const void* A = nullptr;
  const void* B = nullptr;
  const void* bias = nullptr;  // per output channel of the GEMM's column (forward, bwd input)
  void* out = nullptr;         // y / dx / dw
  void* ws = nullptr;          // split-K partial sums (bwd weight with splits > 1), accumulator type
  long long ws_split_stride = 0;
  int phase_h = 0, phase_w = 0, r0 = 0, rstep = 1, s0 = 0, sstep = 1;  // kDgradPhase (rows (n, i, j): h = phase_h + i*sh)
  int dy_h0 = 0, dy_hstep = 0, dy_w0 = 0, dy_wstep = 0;  // kDgradPhase: dy row of tap jr is dy_h0 - jr*dy_hstep
  KAffine ka;  // reduction entries of the window passes (set_k_affine, at launch)
  int splits = 1, ktiles_per_split = 0;
  // The output's contiguous GEMM side (the vector kernel's staged epilogue: 16-byte runs along it): 0 none, 1 the
  // rows (NCHW pixels), 2 the columns (NHWC channels); set by run_igemm (conv.cu: out_run_of).
  int out_run = 0;
  int group0 = 0, group_count = 1;  // groups handled by this launch (grid.z = group_count * splits)
};

// Tile sizes, named once here (the kernels and the host's grid / split-K computation both use them).  kWarpsM x
// kWarpsN: warp layout of the tensor-core tiles; kMinBlocks: the launch-bounds occupancy target (registers <=
// 65536 / (kThreads * kMinBlocks)).  The "narrow" tensor-core tiles (BN = 64) take GEMMs with <= 64 columns (64
// output channels: first layers, ResNet's first stage), where the 128-wide tile would waste half its MMAs.
// TileSimtF32 runs one block of 8 warps per SM (164-167 registers on sm_90): its 8 x 8 micro-tile gives 64
// independent FFMA chains per thread, enough to keep the FMA pipes busy with 2 warps per scheduler, and a register
// bound of 128 spilled in the main loop.
struct TileSimtF32 { static constexpr int BM = 128, BN = 128, BK = 32, kThreads = 256, kWarpsM = 0, kWarpsN = 0, kMinBlocks = 1; };
struct TileSimtF64 { static constexpr int BM = 64, BN = 64, BK = 16, kThreads = 256, kWarpsM = 0, kWarpsN = 0, kMinBlocks = 2; };
struct TileMma16 { static constexpr int BM = 128, BN = 128, BK = 32, kThreads = 256, kWarpsM = 2, kWarpsN = 4, kMinBlocks = 1; };
struct TileMma16Narrow { static constexpr int BM = 128, BN = 64, BK = 32, kThreads = 256, kWarpsM = 4, kWarpsN = 2, kMinBlocks = 2; };
struct TileMmaTf32 { static constexpr int BM = 128, BN = 128, BK = 16, kThreads = 256, kWarpsM = 2, kWarpsN = 4, kMinBlocks = 1; };
struct TileMmaTf32Narrow { static constexpr int BM = 128, BN = 64, BK = 16, kThreads = 256, kWarpsM = 4, kWarpsN = 2, kMinBlocks = 2; };
constexpr int kNarrowMaxCols = 64;  // GEMMs with at most this many columns take the narrow tensor-core tiles

// The vector kernel (conv_igemm_vec.cuh): warps of WM x WN (4, or 2 for the narrow tile), a k-tile of 64 bytes of the reduction per row (four
// 16-byte chunks: 32 float16/bfloat16 or 16 float32), kStages shared stages.  Its BK in elements equals the
// element-gather tiles' (TileMma16::BK, TileMmaTf32::BK), so the host's k-tile arithmetic serves both.
template <bool kNarrow> struct TileVec {
  static constexpr int BM = 128, BN = kNarrow ? 64 : 128, WM = 64, WN = 64;
  static constexpr int kWarpsM = BM / WM, kWarpsN = BN / WN, kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kChunks = 4, kRowBytes = 16 * kChunks;  // 16-byte chunks per tile row
  static constexpr int kStages = 4, kMinBlocks = 2;
};

// Tile sizes of the kernel that takes (dt, tf32).
inline void igemm_tiles(DType dt, bool tf32, int& bm, int& bn, int& bk) {
  switch (dt) {
    case DType::kFloat16:
    case DType::kBFloat16: bm = TileMma16::BM, bn = TileMma16::BN, bk = TileMma16::BK; return;
    case DType::kFloat32:
      if (tf32) bm = TileMmaTf32::BM, bn = TileMmaTf32::BN, bk = TileMmaTf32::BK;
      else bm = TileSimtF32::BM, bn = TileSimtF32::BN, bk = TileSimtF32::BK;
      return;
    case DType::kFloat64: bm = TileSimtF64::BM, bn = TileSimtF64::BN, bk = TileSimtF64::BK; return;
  }
}

// The implicit-GEMM parameters of pass `mode` (kFwd, kDgrad, kWgrad, kWgradT) for shape s (conv.cu; without
// pointers, splits or group range, which the launcher fills in).
IgemmParams make_igemm(int mode, const ConvShape& s, ConvLayout layout);
// Sets p.ka from p's pass, strides and phase (the launcher calls it last, after any change of layout or strides).
void set_k_affine(IgemmParams& p);
// IgemmParams::out_run of p: the side of the GEMM along which the output (y, dx) is contiguous.
int out_run_of(const IgemmParams& p);
// Whether every reduction-entry offset of p (after set_k_affine) fits in 32 bits, as the vector kernel keeps them.
bool vec_offsets_fit(const IgemmParams& p);
// The kDgradPhase parameters of output phase (a, b), 0 <= a < stride_h, 0 <= b < stride_w; M == 0 when the phase
// has no pixel (H <= a or W <= b).  Kred may be 0 (no tap reaches the phase: its dx is zero, or the bias).
IgemmParams make_dgrad_phase(const ConvShape& s, ConvLayout layout, int a, int b);

// Launches the implicit GEMM for p over grid (ceil(M/BM), ceil(Ncol/BN), group_count*splits).  narrow: the
// BN = 64 tensor-core tiles; vec: the 16-byte vector kernel (conv_igemm_vec.cuh; splits 1; 16 bytes of the
// reduction contiguous in both operands: NHWC A (p.nhwc), forward with a KRSC weight and C/g % (16 / element
// size) == 0, backward-input with a per-group CRSK weight and K/g % (16 / element size) == 0; A and B 16-byte
// aligned).
// conv_igemm_tc.cu takes float16 / bfloat16 / TF32, conv_igemm_simt.cu float32 / float64.
cudaError_t launch_igemm_tc(DType dt, bool narrow, bool vec, const IgemmParams& p, cudaStream_t stream);
cudaError_t launch_igemm_simt(DType dt, const IgemmParams& p, cudaStream_t stream);

// conv_direct.cu.  Depthwise (C/groups == 1, K = groups * mult) direct kernels, bias gradient, split reduction.
struct DirectParams {
  bool nhwc = false;
  int N = 0, C = 0, H = 0, W = 0, K = 0, R = 0, S = 0, P = 0, Q = 0, mult = 1;
  int sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  long long xN = 0, xC = 0, xH = 0, xW = 0, yN = 0, yC = 0, yH = 0, yW = 0;
};
// The direct-kernel parameters for shape s (conv.cu).
DirectParams make_direct(const ConvShape& s, ConvLayout layout);
cudaError_t depthwise_forward(DType dt, const DirectParams& p, const void* x, const void* w, const void* bias,
                              void* y, cudaStream_t stream);
cudaError_t depthwise_backward_input(DType dt, const DirectParams& p, const void* dy, const void* w,
                                     const void* bias, void* dx, cudaStream_t stream);
// Splits of the N*P*Q reduction of the depthwise weight gradient and of the bias gradient (a function of the
// shape only, so results do not depend on the device).
int direct_reduce_splits(int64_t pixels, int64_t outputs);
cudaError_t depthwise_backward_weight(DType dt, const DirectParams& p, const void* dy, const void* x, void* dw,
                                      void* ws, int splits, cudaStream_t stream);
cudaError_t bias_backward(DType dt, const DirectParams& p, const void* dy, void* db, void* ws, int splits,
                          cudaStream_t stream);
// conv_fewchan.cu.  Forward with C <= 4 input channels and groups 1 (first layers) on the tensor cores: float16 /
// bfloat16, and float32 as TF32 when allowed; sm_80+.  fewchan_takes: whether it takes shape s (p =
// make_direct(s, layout)); fewchan_forward runs it (no workspace).
bool fewchan_takes(DType dt, bool allow_tf32, const ConvShape& s, const DirectParams& p);
cudaError_t fewchan_forward(DType dt, bool allow_tf32, const DirectParams& p, const void* x, const void* w,
                            const void* bias, void* y, cudaStream_t stream);
// out[b][j][i] = in[b][i][j] for a dense in of shape batch x I x J (float16, bfloat16, float32): NCHW -> NHWC (I = C, J = H*W)
// and the weight layouts of the vector path (KCRS -> KRSC: batch K, I = C/g, J = R*S; per-group CRSK: batch
// groups, I = K/g, J = C/g*R*S).  32 x 32 tiles through shared memory, both sides coalesced.
cudaError_t transpose_batched(DType dt, const void* in, void* out, int64_t batch, int64_t I, int64_t J,
                              cudaStream_t stream);
// out[i] = sum over s < splits, in order, of ws[s * n + i] (accumulator type of dt), cast to dt.
// With bias (one per channel): out[i] also gets bias[(i / inner) % channels] (NCHW: inner = the plane, NHWC: 1).
cudaError_t reduce_splits(DType dt, const void* ws, int splits, int64_t n, void* out, cudaStream_t stream,
                          const void* bias = nullptr, int64_t channels = 0, int64_t inner = 1);

// Accumulator size in bytes: double for float64, float otherwise.
inline size_t acc_bytes(DType dt) { return dt == DType::kFloat64 ? 8 : 4; }

}  // namespace conv
}  // namespace deepops
