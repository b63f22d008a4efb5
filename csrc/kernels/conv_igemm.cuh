// The implicit-GEMM convolution kernel (forward, backward-input, backward-weight), one template for all compute
// kinds.  Included by conv_igemm_tc.cu (tensor cores) and conv_igemm_simt.cu (FFMA / DFMA), which instantiate it.
//
// Strategy (see conv_common.cuh for how the three passes map onto C = A B):
// * a block computes a BM x BN tile of C for one group (and one split of the reduction for backward-weight);
//   grid = (ceil(M / BM), ceil(Ncol / BN), groups * splits);
// * row / column entries of the tile are built once into shared memory, the BK reduction entries of each k-tile
//   one tile ahead (by the first BK threads, with multiply-shift division, no hardware divide);
// * main loop, double buffered: while the block computes on shared stage s, every thread gathers its share of the
//   next k-tile (BM*BK/256 elements of A, BN*BK/256 of B, zero where the padding or the tile edge is) from global
//   memory into registers, then stores them into stage s^1; one __syncthreads per k-tile.  Neighbouring threads
//   take neighbouring reduction indices or neighbouring rows, whichever is contiguous in memory for the operand
//   and layout (IgemmParams::a_kfast / b_kfast), so the gather is coalesced in NCHW and NHWC.  This is the
//   fallback for what the 16-byte path of conv_igemm_vec.cuh cannot take (channel counts not a multiple of 8 / 4,
//   FFMA and DFMA, and, for now, the weight gradient).
// * tensor cores (16-bit, TF32): shared tiles are K-contiguous rows, A[BM][BK+pad], B[BN][BK+pad], the pad
//   making the fragment loads conflict-free; 8 warps as 2 (M) x 4 (N), each warp a 64 x 32 tile of
//   mma.sync.m16n8k16 (f16 / bf16 in, f32 accumulate) or m16n8k8 (tf32, operands rounded with cvt.rna.tf32.f32
//   when stored to shared memory); the narrow variant (BN = 64, for GEMMs of <= 64 columns) uses 4 x 2 warps of
//   32 x 32;
// * FFMA / DFMA: shared tiles are row-contiguous per k, A[BK][BM + 16 bytes], B[BK][BN + 16 bytes]; 16 x 16
//   threads, each a (BM/16) x (BN/16) micro-tile (8 x 8 floats, 4 x 4 doubles) made of 16-byte runs, so a thread
//   reads its operands of one reduction index with four 16-byte shared loads; the thread index that runs along
//   the output's contiguous dimension is chosen at run time so that the stores coalesce;
// * epilogue: each thread writes its accumulators straight to the output (64-bit offsets from the row and column
//   entries), adding the bias, or, with split-K, to its split's slice of the workspace (reduce_splits adds the
//   slices and the bias).
#pragma once

#include <cstdint>
#include <type_traits>

#include "arch/launch.h"
#include "arch/memory.h"
#include "arch/mma.h"
#include "arch/sync.h"
#include "conv_common.cuh"
#include "device_utils.cuh"

namespace deepops {
namespace conv {

enum OpKind : int { kOpSimt = 0, kOpMma16 = 1, kOpTf32 = 2 };

template <typename T, int Op, bool kNarrow> struct IgemmCfg;
template <bool N> struct IgemmCfg<float, kOpSimt, N> : TileSimtF32 { using Smem = float; using Acc = float; };
template <bool N> struct IgemmCfg<double, kOpSimt, N> : TileSimtF64 { using Smem = double; using Acc = double; };
template <bool N>
struct IgemmCfg<__half, kOpMma16, N> : std::conditional_t<N, TileMma16Narrow, TileMma16> {
  using Smem = __half;
  using Acc = float;
};
template <bool N>
struct IgemmCfg<__nv_bfloat16, kOpMma16, N> : std::conditional_t<N, TileMma16Narrow, TileMma16> {
  using Smem = __nv_bfloat16;
  using Acc = float;
};
template <bool N>
struct IgemmCfg<float, kOpTf32, N> : std::conditional_t<N, TileMmaTf32Narrow, TileMmaTf32> {
  using Smem = float;
  using Acc = float;
};

// Shared-memory geometry of a configuration.
template <typename T, int Op, bool kNarrow> struct IgemmSmem {
  using Cfg = IgemmCfg<T, Op, kNarrow>;
  using Smem = typename Cfg::Smem;
  static constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK;
  static constexpr bool kSimt = Op == kOpSimt;
  static constexpr int kPad = Op == kOpMma16 ? 8 : 4;  // K-row pad of the tensor-core tiles (elements)
  // Leading dimensions: SIMT tiles are [BK][rows + 16 bytes] (rows 16-byte aligned for the vector loads; the pad
  // leaves the k-fast stores of the gather 2-way conflicted at most), tensor-core tiles [rows][BK + pad].
  static constexpr int kSimtPad = 16 / int(sizeof(Smem));
  static constexpr int LDA = kSimt ? BM + kSimtPad : BK + kPad;
  static constexpr int LDB = kSimt ? BN + kSimtPad : BK + kPad;
  static constexpr int kStageA = kSimt ? BK * LDA : BM * LDA;
  static constexpr int kStageB = kSimt ? BK * LDB : BN * LDB;
  static constexpr size_t kTableBytes = (BM + BN) * sizeof(Entry) + 2 * BK * 2 * sizeof(Entry) + (BM + BN) * 8;
  static constexpr size_t kBytes = kTableBytes + 2 * size_t(kStageA + kStageB) * sizeof(Smem);
  __device__ __forceinline__ static int a_index(int row, int kk) { return kSimt ? kk * LDA + row : row * LDA + kk; }
  __device__ __forceinline__ static int b_index(int row, int kk) { return kSimt ? kk * LDB + row : row * LDB + kk; }
};

// ------------------------------------------------------------------------------------------------ table entries
__host__ __device__ __forceinline__ void split_crs(const IgemmParams& p, int idx, int& c, int& r, int& s) {
  int q1, r1, rs;
  if (p.nhwc) {  // idx = (r*S + s)*channels + c
    p.div_ch.divmod(idx, q1, r1);
    c = r1, rs = q1;
  } else {  // idx = c*R*S + r*S + s
    p.div_rs.divmod(idx, q1, r1);
    c = q1, rs = r1;
  }
  p.div_s.divmod(rs, r, s);
}

__host__ __device__ __forceinline__ void split_pixel(const IgemmParams& p, int idx, int& n, int& a, int& b) {
  int rem;
  p.div_plane.divmod(idx, n, rem);
  p.div_row.divmod(rem, a, b);
}

// Entry of GEMM row m (A side) and the offset of output row m.
__host__ __device__ __forceinline__ void build_row(const IgemmParams& p, int g, int m, Entry& e, long long& out) {
  if (m >= p.M) {
    e = invalid_entry(), out = 0;
    return;
  }
  if (p.mode == kFwd) {
    int n, pp, q;
    split_pixel(p, m, n, pp, q);
    const int hb = pp * p.sh - p.ph, wb = q * p.sw - p.pw;
    e.off = n * p.xN + (long long)(g * p.Cg) * p.xC + hb * p.xH + wb * p.xW;
    e.h = hb, e.w = wb;
    out = n * p.yN + pp * p.yH + q * p.yW;
  } else if (p.mode == kDgrad) {
    int n, h, w;
    split_pixel(p, m, n, h, w);
    e.h = h + p.ph, e.w = w + p.pw;
    e.off = n * p.yN + (long long)(g * p.Kg) * p.yC + e.h * p.yH + e.w * p.yW;
    out = n * p.xN + h * p.xH + w * p.xW;
  } else if (p.mode == kDgradPhase) {  // row (n, i, j): dx pixel (phase_h + i*sh, phase_w + j*sw)
    int n, i, j;
    split_pixel(p, m, n, i, j);
    e.h = i, e.w = j;
    e.off = n * p.yN + (long long)(g * p.Kg) * p.yC + i * p.yH + j * p.yW;
    out = n * p.xN + (p.phase_h + i * p.sh) * p.xH + (p.phase_w + j * p.sw) * p.xW;
  } else if (p.mode == kWgrad) {
    e.off = (long long)(g * p.Kg + m) * p.yC;
    e.h = 0, e.w = 0;
    out = (long long)(g * p.Kg + m) * (p.Cg * p.R * p.S);
  } else {  // kWgradT: row (c, r, s) of x
    int c, r, s;
    split_crs(p, m, c, r, s);
    e.h = r * p.dh, e.w = s * p.dw;
    e.off = (long long)(g * p.Cg + c) * p.xC + e.h * p.xH + e.w * p.xW;
    out = (long long)c * (p.R * p.S) + r * p.S + s;
  }
}

// Entry of GEMM column j (B side) and the offset of output column j.
__host__ __device__ __forceinline__ void build_col(const IgemmParams& p, int g, int j, Entry& e, long long& out) {
  if (j >= p.Ncol) {
    e = invalid_entry(), out = 0;
    return;
  }
  if (p.mode == kFwd) {
    e.off = (long long)(g * p.Kg + j) * p.wK, e.h = 0, e.w = 0;
    out = (long long)(g * p.Kg + j) * p.yC;
  } else if (p.mode == kDgrad || p.mode == kDgradPhase) {
    e.off = g * p.wG + j * p.wC, e.h = 0, e.w = 0;
    out = (long long)(g * p.Cg + j) * p.xC;
  } else if (p.mode == kWgrad) {
    int c, r, s;
    split_crs(p, j, c, r, s);
    e.h = r * p.dh, e.w = s * p.dw;
    e.off = (long long)(g * p.Cg + c) * p.xC + e.h * p.xH + e.w * p.xW;
    out = (long long)c * (p.R * p.S) + r * p.S + s;
  } else {  // kWgradT: column k of dy
    e.off = (long long)(g * p.Kg + j) * p.yC, e.h = 0, e.w = 0;
    out = (long long)(g * p.Kg + j) * (p.Cg * p.R * p.S);
  }
}

// The window passes' reduction entry of split (c, i, j) (KAffine); Off = long long, or int where the launcher
// checked that every offset fits (the vector kernel).
template <typename Off>
__host__ __device__ __forceinline__ void window_k(const KAffine& f, int c, int i, int j, int& h, int& w, Off& a_off,
                                                  Off& b_off) {
  h = f.h0 + i * f.hstep, w = f.w0 + j * f.wstep;
  a_off = c * static_cast<Off>(f.a_c) + h * static_cast<Off>(f.a_h) + w * static_cast<Off>(f.a_w);
  b_off = static_cast<Off>(f.b0) + c * static_cast<Off>(f.b_c) + i * static_cast<Off>(f.b_i) + j * static_cast<Off>(f.b_j);
}

__host__ __device__ __forceinline__ void build_k_pixel(const IgemmParams& p, int kk, Entry& a, Entry& b);

// Entries of reduction index kk for A and B.  The window passes (forward, backward-input and its phases) split kk
// into (c, i, j) (split_crs) and take the affine form of IgemmParams::ka (set_k_affine); backward-weight splits it
// into a pixel (n, p, q).
__host__ __device__ __forceinline__ void build_k(const IgemmParams& p, int kk, Entry& a, Entry& b) {
  if (kk >= p.Kred) {
    a = b = invalid_entry();
    return;
  }
  if (p.mode != kWgrad && p.mode != kWgradT) {
    int c, i, j;
    split_crs(p, kk, c, i, j);
    window_k(p.ka, c, i, j, a.h, a.w, a.off, b.off);
    b.h = 0, b.w = 0;
    return;
  }
  build_k_pixel(p, kk, a, b);
}

// build_k of the backward-weight modes (kWgrad, kWgradT), kk < Kred: pixel (n, p, q) of dy and its window origin
// in x.
// The x side of output pixel (n, pp, q): its window origin in x and offset.
// Off: long long, or int where the launcher checked that x has fewer than 2^31 elements (the vector kernel).
template <typename Off>
__host__ __device__ __forceinline__ void pixel_x_origin(const IgemmParams& p, int n, int pp, int q, Off& off, int& h,
                                                        int& w) {
  h = pp * p.sh - p.ph, w = q * p.sw - p.pw;
  off = Off(n) * Off(p.xN) + Off(h) * Off(p.xH) + Off(w) * Off(p.xW);
}
__host__ __device__ __forceinline__ Entry pixel_x_entry(const IgemmParams& p, int n, int pp, int q) {
  Entry e;
  pixel_x_origin(p, n, pp, q, e.off, e.h, e.w);
  return e;
}

__host__ __device__ __forceinline__ void build_k_pixel(const IgemmParams& p, int kk, Entry& a, Entry& b) {
  int n, pp, q;
  split_pixel(p, kk, n, pp, q);
  const Entry dy{n * p.yN + pp * p.yH + q * p.yW, 0, 0};
  const Entry x = pixel_x_entry(p, n, pp, q);
  a = p.mode == kWgrad ? dy : x;  // kWgrad: A = dy, B = x; kWgradT: A = x, B = dy
  b = p.mode == kWgrad ? x : dy;
}

// Zero of a storage type, on the host too (the table and gather functions above and below are host-callable so
// that tests_cpp/test_conv.cu can check the GEMM formulation on a machine without a GPU).
// Load mapping: element e (0 <= e < BR*BK/kThreads) of thread tid in a BR x BK operand tile is (row, kk).  kfast:
// neighbouring threads take neighbouring reduction indices; otherwise neighbouring rows.  Every (row, kk) of the
// tile is taken by exactly one (tid, e) (checked by tests_cpp/test_conv.cu).
template <int BR, int BK, int kThreads>
__host__ __device__ __forceinline__ void tile_coord(bool kfast, int tid, int e, int& row, int& kk) {
  if (kfast) row = tid / BK + e * (kThreads / BK), kk = tid % BK;
  else row = tid % BR, kk = tid / BR + e * (kThreads / BR);
}

template <typename T> __host__ __device__ __forceinline__ T zero_value() { return T(0); }
template <> __host__ __device__ __forceinline__ __half zero_value<__half>() { return __half(__half_raw{0}); }
template <> __host__ __device__ __forceinline__ __nv_bfloat16 zero_value<__nv_bfloat16>() {
  return __nv_bfloat16(__nv_bfloat16_raw{0});
}

// Element (row entry r, reduction entry k) of a window operand: zero outside [0, lim_h) x [0, lim_w).
template <typename T>
__host__ __device__ __forceinline__ T gather_window(const T* __restrict__ base, const Entry& r, const Entry& k, int lim_h,
                                           int lim_w) {
  const int h = r.h + k.h, w = r.w + k.w;
  if (static_cast<unsigned>(h) < static_cast<unsigned>(lim_h) && static_cast<unsigned>(w) < static_cast<unsigned>(lim_w))
    return base[r.off + k.off];
  return zero_value<T>();
}

// ------------------------------------------------------------------------------------------------ the kernel
// The load mapping of a kernel: read per launch from a_kfast / b_kfast (the tensor-core gather: a fallback), or
// fixed at compile time (the FFMA / DFMA kernels, one instantiation per combination that make_igemm produces, so
// that no gathered element pays a select for it).
enum LoadMap : int {
  kMapRuntime = 0,
  kMapRowsK = 1,     // A rows-fast, B k-fast: NCHW forward / backward-input
  kMapKK = 2,        // both k-fast: NHWC forward / backward-input, NCHW backward-weight
  kMapRowsRows = 3,  // both rows-fast: NHWC backward-weight
};

template <typename T, int Op, bool kNarrow, int kMap = kMapRuntime>
__global__ void __launch_bounds__(IgemmCfg<T, Op, kNarrow>::kThreads, IgemmCfg<T, Op, kNarrow>::kMinBlocks)
    conv_igemm_kernel(const IgemmParams p) {
  using Cfg = IgemmCfg<T, Op, kNarrow>;
  using L = IgemmSmem<T, Op, kNarrow>;
  using Smem = typename Cfg::Smem;
  using Acc = typename Cfg::Acc;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, kThreads = Cfg::kThreads;
  constexpr int EA = BM * BK / kThreads, EB = BN * BK / kThreads;  // gathered elements per thread and k-tile
  static_assert(kThreads % BK == 0 && kThreads % BM == 0 && kThreads % BN == 0 && BM * BK % kThreads == 0 &&
                    BN * BK % kThreads == 0,
                "load mapping");

  DEEPOPS_DYNAMIC_SHARED(unsigned char, smem_raw);
  Entry* row_a = reinterpret_cast<Entry*>(smem_raw);       // [BM]
  Entry* col_b = row_a + BM;                               // [BN]
  Entry* ktab = col_b + BN;                                // [2][BK][2]: (A entry, B entry) per index, 2 stages
  long long* row_out = reinterpret_cast<long long*>(ktab + 4 * BK);  // [BM]
  long long* col_out = row_out + BM;                                 // [BN]
  Smem* sa = reinterpret_cast<Smem*>(col_out + BN);                  // [2][stage A]
  Smem* sb = sa + 2 * L::kStageA;                                    // [2][stage B]

  const int tid = threadIdx.x;
  const int split = blockIdx.z % p.splits;
  const int g = p.group0 + blockIdx.z / p.splits;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int ktiles = (p.Kred + BK - 1) / BK;
  const int kt_begin = split * p.ktiles_per_split;
  const int kt_end = min(ktiles, kt_begin + p.ktiles_per_split);
  const T* __restrict__ A = static_cast<const T*>(p.A);
  const T* __restrict__ B = static_cast<const T*>(p.B);

  for (int i = tid; i < BM; i += kThreads) build_row(p, g, m0 + i, row_a[i], row_out[i]);
  for (int j = tid; j < BN; j += kThreads) build_col(p, g, n0 + j, col_b[j], col_out[j]);
  if (kt_begin < kt_end && tid < BK) build_k(p, kt_begin * BK + tid, ktab[2 * tid], ktab[2 * tid + 1]);
  arch::sync_threads();

  // Register stage of the next k-tile; element e of this thread is (row, kk) of the tile per the load mapping.
  T ra[EA], rb[EB];
  // (p.a_kfast is read where it is used: held in a register for the whole kernel it made the narrow 16-bit gather
  // spill at its 128-register bound)
  auto a_coord = [&](int e, int& row, int& kk) {
    tile_coord<BM, BK, kThreads>(kMap == kMapRuntime ? p.a_kfast : kMap == kMapKK, tid, e, row, kk);
  };
  auto b_coord = [&](int e, int& row, int& kk) {
    tile_coord<BN, BK, kThreads>(kMap == kMapRuntime ? p.b_kfast : kMap != kMapRowsRows, tid, e, row, kk);
  };
  auto load_tile = [&](int stage) {
    const Entry* kt = ktab + stage * 2 * BK;
#pragma unroll
    for (int e = 0; e < EA; ++e) {
      int row, kk;
      a_coord(e, row, kk);
      const Entry r = row_a[row], k = kt[2 * kk];
      ra[e] = gather_window<T>(A, r, k, p.a_lim_h, p.a_lim_w);
    }
#pragma unroll
    for (int e = 0; e < EB; ++e) {
      int row, kk;
      b_coord(e, row, kk);
      rb[e] = gather_window<T>(B, col_b[row], kt[2 * kk + 1], p.b_lim_h, p.b_lim_w);
    }
  };
  auto store_tile = [&](int stage) {
    Smem* da = sa + stage * L::kStageA;
    Smem* db = sb + stage * L::kStageB;
#pragma unroll
    for (int e = 0; e < EA; ++e) {
      int row, kk;
      a_coord(e, row, kk);
      if constexpr (Op == kOpTf32) da[L::a_index(row, kk)] = arch::uint_as_float(arch::cvt_rna_tf32(ra[e]));
      else da[L::a_index(row, kk)] = ra[e];
    }
#pragma unroll
    for (int e = 0; e < EB; ++e) {
      int row, kk;
      b_coord(e, row, kk);
      if constexpr (Op == kOpTf32) db[L::b_index(row, kk)] = arch::uint_as_float(arch::cvt_rna_tf32(rb[e]));
      else db[L::b_index(row, kk)] = rb[e];
    }
  };

  // Accumulators and the compute step of one shared stage.
  const int bias_base = p.mode == kFwd ? g * p.Kg : g * p.Cg;
  const T* __restrict__ bias = static_cast<const T*>(p.bias);
  const bool to_ws = p.ws != nullptr;
  auto store_out = [&](int r, int c, Acc v) {
    if (m0 + r >= p.M || n0 + c >= p.Ncol) return;
    const long long off = row_out[r] + col_out[c];
    if (to_ws) {  // split-K partial sums (the bias comes with their reduction)
      static_cast<Acc*>(p.ws)[split * p.ws_split_stride + off] = v;
      return;
    }
    if (bias) v += to_compute(bias[bias_base + n0 + c]);
    static_cast<T*>(p.out)[off] = from_compute<T>(v);
  };

  if constexpr (Op == kOpSimt) {
    // 16 x 16 threads, each TM x TN outputs in two runs of TM/2 rows and two of TN/2 columns, half a tile apart:
    // rows (BM/2) * u + (TM/2) * rx + e.  A run is 16 bytes (4 floats, 2 doubles): per reduction index a thread
    // reads its operands with four 16-byte shared loads (TM*TN FMAs: 64 for float32, 16 for float64), and the 16
    // threads of a row read 16 consecutive runs.
    constexpr int TM = BM / 16, TN = BN / 16, HM = TM / 2, HN = TN / 2;
    static_assert(HM * sizeof(Smem) == 16 && HN * sizeof(Smem) == 16, "16-byte runs");
    struct alignas(16) Run { Smem v[16 / sizeof(Smem)]; };
    // Rows contiguous in the output (NCHW forward / backward-input): tx runs along rows, else along columns.
    const bool rows_fast = !p.nhwc && p.mode != kWgrad;  // (kWgradT: rows (c, r, s) contiguous in dw)
    const int rx = rows_fast ? tid % 16 : tid / 16, cx = rows_fast ? tid / 16 : tid % 16;
    auto row_of = [&](int i) { return (i / HM) * (BM / 2) + HM * rx + i % HM; };
    auto col_of = [&](int j) { return (j / HN) * (BN / 2) + HN * cx + j % HN; };
    Acc acc[TM][TN];
    zero_fill(acc);
    auto compute = [&](int stage) {
      const Smem* ta = sa + stage * L::kStageA;
      const Smem* tb = sb + stage * L::kStageB;
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        Run av[2], bv[2];
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          av[u] = *reinterpret_cast<const Run*>(ta + kk * L::LDA + u * (BM / 2) + HM * rx);
          bv[u] = *reinterpret_cast<const Run*>(tb + kk * L::LDB + u * (BN / 2) + HN * cx);
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j)
            acc[i][j] = fma(Acc(av[i / HM].v[i % HM]), Acc(bv[j / HN].v[j % HN]), acc[i][j]);
      }
    };
    if (kt_begin < kt_end) {
      load_tile(0);
      store_tile(0);
      if (kt_begin + 1 < kt_end && tid < BK)
        build_k(p, (kt_begin + 1) * BK + tid, ktab[2 * BK + 2 * tid], ktab[2 * BK + 2 * tid + 1]);
      arch::sync_threads();
      for (int kt = kt_begin; kt < kt_end; ++kt) {
        const int cur = (kt - kt_begin) & 1;
        const bool more = kt + 1 < kt_end;
        if (more) load_tile(cur ^ 1);
        compute(cur);
        if (more) {
          store_tile(cur ^ 1);
          if (kt + 2 < kt_end && tid < BK)
            build_k(p, (kt + 2) * BK + tid, ktab[cur * 2 * BK + 2 * tid], ktab[cur * 2 * BK + 2 * tid + 1]);
        }
        arch::sync_threads();
      }
    }
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) store_out(row_of(i), col_of(j), acc[i][j]);
  } else {
    constexpr int kWarpsM = Cfg::kWarpsM, kWarpsN = Cfg::kWarpsN;
    static_assert(kWarpsM * kWarpsN * 32 == kThreads, "warp layout");
    constexpr int WTM = BM / kWarpsM, WTN = BN / kWarpsN;  // 64 x 32 (wide) or 32 x 32 (narrow) per warp
    constexpr int MI = WTM / 16, NI = WTN / 8;
    constexpr int KSTEP = Op == kOpTf32 ? 8 : 16;
    const int warp = tid / 32, lane = tid % 32;
    const int wm = warp % kWarpsM, wn = warp / kWarpsM;
    const int gid = lane >> 2, t4 = lane & 3;
    float acc[MI][NI][4];
    zero_fill(acc);
    auto compute = [&](int stage) {
      const Smem* ta = sa + stage * L::kStageA;
      const Smem* tb = sb + stage * L::kStageB;
#pragma unroll
      for (int ks = 0; ks < BK / KSTEP; ++ks) {
        uint32_t af[MI][4], bf[NI][2];
#pragma unroll
        for (int i = 0; i < MI; ++i) {
          const int r0 = wm * WTM + i * 16 + gid;
          if constexpr (Op == kOpTf32) {
            const Smem* q = ta + r0 * L::LDA + ks * KSTEP + t4;
            af[i][0] = arch::float_as_uint(q[0]);
            af[i][1] = arch::float_as_uint(q[8 * L::LDA]);
            af[i][2] = arch::float_as_uint(q[4]);
            af[i][3] = arch::float_as_uint(q[8 * L::LDA + 4]);
          } else {
            const Smem* q = ta + r0 * L::LDA + ks * KSTEP + t4 * 2;
            af[i][0] = *reinterpret_cast<const uint32_t*>(q);
            af[i][1] = *reinterpret_cast<const uint32_t*>(q + 8 * L::LDA);
            af[i][2] = *reinterpret_cast<const uint32_t*>(q + 8);
            af[i][3] = *reinterpret_cast<const uint32_t*>(q + 8 * L::LDA + 8);
          }
        }
#pragma unroll
        for (int j = 0; j < NI; ++j) {
          const int c0 = wn * WTN + j * 8 + gid;
          if constexpr (Op == kOpTf32) {
            const Smem* q = tb + c0 * L::LDB + ks * KSTEP + t4;
            bf[j][0] = arch::float_as_uint(q[0]);
            bf[j][1] = arch::float_as_uint(q[4]);
          } else {
            const Smem* q = tb + c0 * L::LDB + ks * KSTEP + t4 * 2;
            bf[j][0] = *reinterpret_cast<const uint32_t*>(q);
            bf[j][1] = *reinterpret_cast<const uint32_t*>(q + 8);
          }
        }
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
          for (int j = 0; j < NI; ++j) {
            if constexpr (Op == kOpTf32) arch::mma_m16n8k8_tf32(acc[i][j], af[i], bf[j]);
            else arch::mma_m16n8k16<T>(acc[i][j], af[i], bf[j]);
          }
      }
    };
    if (kt_begin < kt_end) {
      load_tile(0);
      store_tile(0);
      if (kt_begin + 1 < kt_end && tid < BK)
        build_k(p, (kt_begin + 1) * BK + tid, ktab[2 * BK + 2 * tid], ktab[2 * BK + 2 * tid + 1]);
      arch::sync_threads();
      for (int kt = kt_begin; kt < kt_end; ++kt) {
        const int cur = (kt - kt_begin) & 1;
        const bool more = kt + 1 < kt_end;
        if (more) load_tile(cur ^ 1);
        compute(cur);
        if (more) {
          store_tile(cur ^ 1);
          if (kt + 2 < kt_end && tid < BK)
            build_k(p, (kt + 2) * BK + tid, ktab[cur * 2 * BK + 2 * tid], ktab[cur * 2 * BK + 2 * tid + 1]);
        }
        arch::sync_threads();
      }
    }
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int r = wm * WTM + i * 16 + gid, c = wn * WTN + j * 8 + t4 * 2;
        store_out(r, c, acc[i][j][0]);
        store_out(r, c + 1, acc[i][j][1]);
        store_out(r + 8, c, acc[i][j][2]);
        store_out(r + 8, c + 1, acc[i][j][3]);
      }
  }
}

// Launch of an implicit-GEMM kernel (this file's or conv_igemm_vec.cuh's) over p's grid: (ceil(M / BM),
// ceil(Ncol / BN), group_count * splits) blocks of `threads`, with `smem` bytes of dynamic shared memory.
template <auto Kernel, int BM, int BN>
cudaError_t launch_igemm_grid(const IgemmParams& p, int threads, size_t smem, cudaStream_t stream) {
  cudaError_t err = arch::allow_dynamic_smem<Kernel>(smem);  // once per device, not per launch
  if (err != cudaSuccess) return err;
  const long long gx = (static_cast<long long>(p.M) + BM - 1) / BM;
  const long long gy = (static_cast<long long>(p.Ncol) + BN - 1) / BN;
  const long long gz = static_cast<long long>(p.group_count) * p.splits;
  if (gx > INT_MAX || gy > arch::kMaxGridYZ || gz > arch::kMaxGridYZ) return cudaErrorInvalidValue;
  return arch::launch<Kernel>(dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(gz)),
                              threads, smem, stream, p);
}

// Launch of one instantiation over p's grid.
template <typename T, int Op, bool kNarrow, int kMap = kMapRuntime>
cudaError_t launch_igemm_cfg(const IgemmParams& p, cudaStream_t stream) {
  using Cfg = IgemmCfg<T, Op, kNarrow>;
  return launch_igemm_grid<conv_igemm_kernel<T, Op, kNarrow, kMap>, Cfg::BM, Cfg::BN>(
      p, Cfg::kThreads, IgemmSmem<T, Op, kNarrow>::kBytes, stream);
}

}  // namespace conv
}  // namespace deepops
