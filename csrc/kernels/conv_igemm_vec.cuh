// The vector implicit-GEMM convolution: forward and backward-input when 16 bytes of the reduction are contiguous in
// both operands (8 channels of float16 / bfloat16, 4 of float32 run as TF32), and backward-weight when 16 bytes of
// consecutive GEMM rows are (below, kVecWgrad / kVecWgradT).  conv.cu brings the operands there: the weight is
// transposed once per call (KRSC for forward, per-group CRSK for backward-input) and NCHW activations are
// transposed to NHWC by a bandwidth-bound kernel (as cuDNN does); the output is written in the caller's layout
// directly, or, with split-K, as partial sums to the workspace.  Included by conv_igemm_tc.cu.
//
// Strategy (the GEMM and its entries are conv_common.cuh's; what differs from the element gather of
// conv_igemm.cuh is how a k-tile reaches the tensor cores):
// * a block computes a BM x BN tile of C: 128 x 128 with 4 warps, or 128 x 64 with 2 warps for GEMMs of <= 64
//   columns; every warp a 64 x 64 tile, 4 x 8 mma.sync tiles of 16 x 8 per k-step, so one fragment load of A serves
//   8 MMAs and one of B 4.  (A 128 x 64 tile of 4 warps of 64 x 32 would issue 3.7 instructions per MMA in its main
//   loop instead of 2.9: the copies and the reduction entry are per k-tile, the MMAs per warp tile.)
// * a k-tile is 64 bytes of the reduction per row, four 16-byte chunks.  Thread t always copies chunk t % 4 of rows
//   t / 4 + (threads / 4) i, so it needs one reduction entry per k-tile (two multiply-shift divisions and the
//   affine form of IgemmParams::ka, 32-bit, in registers: no table) and keeps its rows' pointers in registers;
// * global -> shared with cp.async.cg (16 bytes, zero-filled where the window leaves the tensor or the GEMM ends),
//   kStages = 4 stages in flight: the loop waits with cp.async.wait_group kStages - 2, so three k-tiles are on
//   their way while one is computed; one __syncthreads per k-tile (it also frees the stage the next copies go to);
// * shared layout: a stage is A[BM][64 bytes] then B[BN][64 bytes], rows of four chunks with the chunk index XORed
//   with bits 1-2 of the row (vec_swizzle()): the 8 rows an ldmatrix phase reads and the 8 chunks a cp.async phase
//   writes fall in 8 different 16-byte bank groups, so neither conflicts, with no padding;
// * fragments with ldmatrix.x4: one instruction gives a whole 16 x 16 A fragment (16-bit) or 16 x 8 (TF32), or two
//   8-column B fragments.  TF32 operands go to the tensor core as stored, not rounded to TF32 first: the tensor
//   core reads their top 19 bits (truncation; the emulator does the same, see arch/mma.h), since a cvt.rna per
//   fragment register would cost half an instruction per MMA.  The element gather rounds (cvt.rna) when it stores;
//   the two differ by at most one TF32 ulp per operand;
// * epilogue (forward, backward-input): the warp's tile, 32 columns at a time, staged as float in the stages'
//   shared memory, then written along the output's contiguous side (IgemmParams::out_run: NCHW pixels, NHWC
//   channels) in 16-byte runs where whole, contiguous and aligned; element stores otherwise and for
//   backward-weight, through the 64-bit row / column output offsets kept in shared memory (so NCHW and NHWC outputs
//   and the bias work alike).
#pragma once

#include <cstdint>
#include <cstring>
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

// 16 bytes of Out from 16 / sizeof(Out) floats (rounded to Out), lowest element in the lowest bytes.
template <typename Out> __device__ __forceinline__ uint4 pack16(const float (&v)[16 / sizeof(Out)]) {
  uint32_t w[4];
  if constexpr (sizeof(Out) == 4) {
#pragma unroll
    for (int i = 0; i < 4; ++i) memcpy(&w[i], &v[i], 4);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const Out lo = from_compute<Out>(v[2 * i]), hi = from_compute<Out>(v[2 * i + 1]);
      uint16_t a, b;
      memcpy(&a, &lo, 2), memcpy(&b, &hi, 2);
      w[i] = uint32_t(a) | (uint32_t(b) << 16);
    }
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// The passes of the vector kernel: forward / backward-input (window operand A, K-major tiles), and backward-weight
// as kWgrad (A = dy, B = x) or kWgradT (A = x, B = dy).
enum VecPass : int { kVecWindow = 0, kVecWgrad = 1, kVecWgradT = 2 };

// Backward-weight in TF32: the MMA's rows and columns permuted within a warp's 64 x 64 tile, so that its
// fragments load with few instructions and no bank conflicts (any permutation computes the same products; the
// epilogue writes each accumulator to the row and column its slot holds).  m16n8k8's A fragment of lane group g
// (= lane / 4) is rows g, g + 8 at pixels tig, tig + 4: with rows g, g + 8 of m-tile i adjacent, each pixel's pair
// is one 8-byte load (the quad of a fragment two loads, no register moves); the pair sits at 2 ((i + g) & 3) in the
// lane group's 8 floats, so the 16 lanes of a half-warp (4 pixels 8 floats mod 32 apart) reach 16 bank pairs.  B
// is column g at pixels tig, tig + 4 (two 4-byte loads); column g of n-tile j sits at (j + g) & 7, so the 32 lanes
// reach 32 banks.  Pixel rows are kVecWgradTf32Pad floats longer than the tile (8 mod 32 words).
__host__ __device__ constexpr int vec_wgrad_tf32_row(int g, int i, int h) { return g * 8 + 2 * ((i + g) & 3) + h; }
__host__ __device__ constexpr int vec_wgrad_tf32_col(int g, int j) { return g * 8 + ((j + g) & 7); }

// Backward-weight: k-tiles per part of the x-entry table (two parts: the one read, the one built ahead).
constexpr int kVecTableTiles = 8;

// Backward-weight in TF32: elements of padding per pixel row of a stage (no swizzle; see the kernel).
constexpr int kVecWgradTf32Pad = 8;

template <typename T, bool kNarrow, int kPass> struct VecSmem {
  using Tile = TileVec<kNarrow>;
  static constexpr int BK = Tile::kChunks * 16 / int(sizeof(T));
  // backward-weight: bytes per pixel row of the A and B parts of a stage (BK rows each)
  static constexpr int kPad = kPass != kVecWindow && sizeof(T) == 4 ? kVecWgradTf32Pad : 0;
  static constexpr int kPixRowA = (Tile::BM + kPad) * int(sizeof(T)), kPixRowB = (Tile::BN + kPad) * int(sizeof(T));
  // output offsets; backward-weight also the x entries (int4: offset, h, w) of the pixels of 2 x kVecTableTiles
  // k-tiles
  static constexpr size_t kTableBytes = (Tile::BM + Tile::BN) * sizeof(long long) +
                                        (kPass != kVecWindow ? 2 * kVecTableTiles * BK * sizeof(int4) : 0);
  static constexpr size_t kStageBytes = kPass != kVecWindow ? size_t(BK) * (kPixRowA + kPixRowB)
                                                             : size_t(Tile::BM + Tile::BN) * Tile::kRowBytes;
  static constexpr size_t kBytes = kTableBytes + Tile::kStages * kStageBytes;
};

// kVecWindow: forward and backward-input (K-major tiles, ldmatrix).  kVecWgrad / kVecWgradT: backward-weight, where
// the reduction runs over pixels and 8 consecutive GEMM rows (channels, or (c, r, s) with c fastest) are the
// contiguous 16 bytes: a stage holds A[BK][BM] and B[BK][BN] with one row per pixel.  16-bit: each row's chunk
// index XORed with the pixel's low 3 bits, the fragments with ldmatrix.trans.  TF32 (ldmatrix.trans moves 16-bit
// elements only): rows padded by kVecWgradTf32Pad floats, no swizzle, and the MMA's rows and columns permuted
// (vec_wgrad_tf32_row / _col) so that an A fragment is two 8-byte shared loads, a B fragment two 4-byte ones.  dy is NHWC and dense, so pixel kk of a dy row is kk * K elements on: no entry.  The x entries (32-bit
// offset and window origin) of the pixels of kVecTableTiles k-tiles are built by all threads at once, into the
// free part of a two-part table, at the first k-tile of the previous part (peeled out of the k-tile loop, so the
// loop itself only reads entries); offsets are 32-bit (the launcher checked that x and dy have < 2^31
// elements).  The row entries stay in registers.  Split-K as for the element gather (grid.z = groups x splits,
// partial tiles to the workspace), which every pass may take.
template <typename T, bool kNarrow, int kPass>
__global__ void __launch_bounds__(TileVec<kNarrow>::kThreads, TileVec<kNarrow>::kMinBlocks)
    conv_igemm_vec_kernel(const IgemmParams p) {
  using Tile = TileVec<kNarrow>;
  using L = VecSmem<T, kNarrow, kPass>;
  constexpr bool kWgrad = kPass != kVecWindow;
  constexpr bool kTf32 = std::is_same<T, float>::value;
  static_assert(kTf32 || sizeof(T) == 2, "16-bit or TF32");
  constexpr int BM = Tile::BM, BN = Tile::BN, WM = Tile::WM, WN = Tile::WN, kThreads = Tile::kThreads;
  constexpr int kStages = Tile::kStages, kChunks = Tile::kChunks;
  constexpr int E = 16 / sizeof(T);  // elements per chunk
  constexpr int BK = L::BK;          // elements of the reduction per k-tile
  constexpr int MI = WM / 16, NI = WN / 8;
  // K-major: thread t copies chunk t % 4 of rows t / 4 + kRowsPerPass * i.
  constexpr int kRowsPerPass = kThreads / kChunks;
  constexpr int RA = BM / kRowsPerPass, RB = BN / kRowsPerPass;  // rows per thread
  // M-major (backward-weight), per operand of CX chunks per pixel row:
  //  dy side: thread t copies chunk column t % CX of pixel rows t / CX + (threads / CX) * i;
  //  x side: chunk columns t % (CX / 4) + (CX / 4) * c (c < 4, their row entries in registers) of pixel rows
  //  t / (CX / 4) + (4 * threads / CX) * j, so that one x entry serves four copies.
  constexpr int CA = BM / E, CB = BN / E;
  constexpr bool kAIsX = kPass == kVecWgradT, kBIsX = kPass == kVecWgrad;
  constexpr int CX = kAIsX ? CA : CB, CD = kAIsX ? CB : CA;  // chunks per pixel row of the x and dy sides
  constexpr int QX = CX / 4, PX = kThreads / QX, PD = kThreads / CD;
  constexpr int NX = BK / PX, ND = BK / PD;  // pixel rows per thread and k-tile
  constexpr int kPixA = L::kPixRowA, kPixB = L::kPixRowB;  // bytes per pixel row of a stage's A, B parts
  constexpr int kPixX = kAIsX ? kPixA : kPixB, kPixD = kAIsX ? kPixB : kPixA;
  // backward-weight: byte offset of chunk c in pixel row k (16-bit: swizzled with the pixel's low 3 bits)
  auto pix_chunk = [](int k, int c) { return kTf32 ? c << 4 : (c ^ (k & 7)) << 4; };
  static_assert(BK == (kTf32 ? TileMmaTf32::BK : TileMma16::BK), "the host's k-tiles (igemm_tiles)");
  static_assert(NI % 2 == 0 && L::kTableBytes % 16 == 0 && L::kStageBytes % 16 == 0 && kRowsPerPass % 8 == 0 &&
                    (!kWgrad || (CX % 4 == 0 && BK % PX == 0 && BK % PD == 0 && BK <= kThreads)),
                "layout");

  DEEPOPS_DYNAMIC_SHARED(unsigned char, smem);
  long long* row_out = reinterpret_cast<long long*>(smem);  // [BM]
  long long* col_out = row_out + BM;                        // [BN]
  int4* ptab = reinterpret_cast<int4*>(col_out + BN);      // backward-weight: [2][kVecTableTiles * BK] x entries
  unsigned char* stages = smem + L::kTableBytes;

  const int tid = threadIdx.x;
  const int split = blockIdx.z % p.splits;
  const int g = p.group0 + blockIdx.z / p.splits;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int ktiles = (p.Kred + BK - 1) / BK;
  const int kt_begin = split * p.ktiles_per_split;
  const int kt_end = min(ktiles, kt_begin + p.ktiles_per_split);
  const T* __restrict__ A = static_cast<const T*>(p.A);
  const T* __restrict__ B = static_cast<const T*>(p.B);

  // This thread's rows (registers): pointer and window origin per A row and B row.  K-major: the rows of its
  // chunks; M-major: the first of the 8 rows of each of its chunk columns (x side: four, dy side: one).  The output
  // offsets of all rows and columns go to shared memory for the epilogue.
  constexpr int NA = kWgrad ? (kAIsX ? 4 : 1) : RA, NB = kWgrad ? (kBIsX ? 4 : 1) : RB;
  const T* a_ptr[NA];
  const T* b_ptr[NB];
  int a_h[NA], a_w[NA], b_h[NB], b_w[NB];
  unsigned b_ok = 0;  // K-major: bit i = B row i inside the GEMM (the weight has no window)
  const int chunk = tid % kChunks, row0 = tid / kChunks;  // K-major
  const int cx = tid % QX, cd = tid % CD;                  // M-major: first x chunk column, the dy chunk column
  auto row_of = [&](bool is_x, int i) {  // GEMM row (A) or column (B) of this thread's chunk i, relative
    if constexpr (kWgrad) return is_x ? (cx + QX * i) * E : cd * E;
    return row0 + i * kRowsPerPass;
  };
#pragma unroll
  for (int i = 0; i < NA; ++i) {
    Entry e;
    long long out;
    build_row(p, g, m0 + row_of(kAIsX, i), e, out);
    a_ptr[i] = arch::opaque_ptr(A + e.off), a_h[i] = e.h, a_w[i] = e.w;
  }
#pragma unroll
  for (int i = 0; i < NB; ++i) {
    Entry e;
    long long out;
    build_col(p, g, n0 + row_of(kBIsX, i), e, out);
    b_ptr[i] = arch::opaque_ptr(B + e.off), b_h[i] = e.h, b_w[i] = e.w;
    b_ok |= (e.h == 0 ? 1u : 0u) << i;  // build_col marks columns past the GEMM with kInvalidCoord
  }
  for (int r = tid; r < BM; r += kThreads) {
    Entry e;
    build_row(p, g, m0 + r, e, row_out[r]);
  }
  for (int c = tid; c < BN; c += kThreads) {
    Entry e;
    build_col(p, g, n0 + c, e, col_out[c]);
  }
  const unsigned a_lim_h = p.a_lim_h, a_lim_w = p.a_lim_w, b_lim_h = p.b_lim_h, b_lim_w = p.b_lim_w;
  // (bitwise &, not &&: a short circuit makes ptxas predicate the tests and reload the limits per row)
  auto inside = [](int h, int w, unsigned lim_h, unsigned lim_w) {
    return (static_cast<unsigned>(h) < lim_h) & (static_cast<unsigned>(w) < lim_w);
  };

  // backward-weight: the x entries of the pixels of k-tiles [c0, c0 + kVecTableTiles) into their table part,
  // ((c0 - kt_begin) / kVecTableTiles) & 1.
  constexpr int kPart = kVecTableTiles * BK;
  auto build_table = [&](int c0) {
    if constexpr (kWgrad) {
      if (c0 < kt_end) {
        int4* t = ptab + (((c0 - kt_begin) / kVecTableTiles) & 1) * kPart;
        for (int i = tid; i < kPart; i += kThreads) {
          const int kk = c0 * BK + i;
          int n, pp, q, off, h, w;
          split_pixel(p, min(kk, p.Kred - 1), n, pp, q);  // (past the reduction, the window test fails)
          pixel_x_origin(p, n, pp, q, off, h, w);
          t[i] = make_int4(off, kk < p.Kred ? h : kInvalidCoord, w, 0);
        }
      }
    }
  };
  // backward-weight: the dy side's pixel stride (elements; dy is dense NHWC: pixel kk at kk * K)
  const int dy_pixel = static_cast<int>(p.yW);

  // The copies of k-tile kt into shared stage `stage` (one commit group, empty past the end).  A zero-filled
  // cp.async reads nothing, so its source pointer need not be valid.
  auto issue = [&](int kt, int stage_off) {
    if (kt < kt_end) {
      unsigned char* st = stages + stage_off;
      if constexpr (kWgrad) {
        // x side: NX pixel rows, each with its entry from the table, four chunk columns each; dy side: ND pixel
        // rows of one chunk column at kk * K (valid while kk < Kred and its row is inside the GEMM).  Addresses
        // and predicates first, then the copies (one hazard guard before the run of LDGSTS, not one per copy).
        // part ((kt - kt_begin) / kVecTableTiles) & 1, k-tile (kt - kt_begin) % kVecTableTiles of it
        static_assert((kVecTableTiles & (kVecTableTiles - 1)) == 0, "a power of two");
        const int4* t = ptab + ((kt - kt_begin) & (2 * kVecTableTiles - 1)) * BK;
        unsigned char* sx = st + (kAIsX ? 0 : BK * kPixA);
        unsigned char* sd = st + (kAIsX ? BK * kPixA : 0);
        const T* const* x_ptr = kAIsX ? a_ptr : b_ptr;
        const int* x_h = kAIsX ? a_h : b_h;
        const int* x_w = kAIsX ? a_w : b_w;
        const unsigned x_lim_h = kAIsX ? a_lim_h : b_lim_h, x_lim_w = kAIsX ? a_lim_w : b_lim_w;
        const T* d_ptr = kAIsX ? b_ptr[0] : a_ptr[0];
        const bool d_row_ok = (kAIsX ? b_h[0] : a_h[0]) == 0;
        const T* src[NX * 4 + ND];
        bool ok[NX * 4 + ND];
        int dst[NX * 4 + ND];
#pragma unroll
        for (int j = 0; j < NX; ++j) {
          const int k = tid / QX + PX * j;
          const int4 e = t[k];  // (offset, h, w)
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            src[4 * j + c] = x_ptr[c] + e.x;
            ok[4 * j + c] = inside(x_h[c] + e.y, x_w[c] + e.z, x_lim_h, x_lim_w);
            dst[4 * j + c] = k * kPixX + pix_chunk(k, cx + QX * c);
          }
        }
        const int d_off = (kt * BK + tid / CD) * dy_pixel;
        const int d_rows = d_row_ok ? p.Kred - kt * BK : 0;  // pixel rows of this k-tile that dy has
#pragma unroll
        for (int i = 0; i < ND; ++i) {
          const int k = tid / CD + PD * i;
          src[4 * NX + i] = d_ptr + (d_off + PD * i * dy_pixel);
          ok[4 * NX + i] = k < d_rows;
          dst[4 * NX + i] = k * kPixD + pix_chunk(k, cd);
        }
#pragma unroll
        for (int i = 0; i < NX * 4; ++i) arch::cp_async16(sx + dst[i], src[i], ok[i] ? 16 : 0);
#pragma unroll
        for (int i = 0; i < ND; ++i) arch::cp_async16(sd + dst[4 * NX + i], src[4 * NX + i], ok[4 * NX + i] ? 16 : 0);
      } else {
        // The reduction index of this thread's chunk is split as (r, s, c) with c fastest (NHWC); its entry is
        // 32-bit (the launcher checked vec_offsets_fit); past Kred the chunk is zero-filled.
        const int kk = kt * BK + chunk * E;
        int c, rs, i, j, kh, kw, ka, kb;
        p.div_ch.divmod(kk, rs, c);
        p.div_s.divmod(rs, i, j);
        window_k(p.ka, c, i, j, kh, kw, ka, kb);
        const bool k_ok = kk < p.Kred;
        if (!k_ok) kh = kInvalidCoord;  // past the reduction: every A row fails the window test below
        // rows row0 + r * kRowsPerPass keep the swizzle of row0 (kRowsPerPass is a multiple of 8)
        unsigned char* dst = st + vec_swizzle(row0, chunk);
        constexpr int kPassBytes = kRowsPerPass * Tile::kRowBytes;
#pragma unroll
        for (int r = 0; r < RA; ++r) {
          const bool ok = inside(a_h[r] + kh, a_w[r] + kw, a_lim_h, a_lim_w);
          arch::cp_async16(dst + r * kPassBytes, a_ptr[r] + ka, ok ? 16 : 0);
        }
#pragma unroll
        for (int r = 0; r < RB; ++r) {  // the weight: no window; columns past the GEMM carry kInvalidCoord
          const bool ok = k_ok & ((b_ok >> r) & 1u);
          arch::cp_async16(dst + BM * Tile::kRowBytes + r * kPassBytes, b_ptr[r] + kb, ok ? 16 : 0);
        }
      }
    }
    arch::cp_async_commit();
  };

  const int warp = tid / 32, lane = tid % 32;
  const int wm = warp % Tile::kWarpsM, wn = warp / Tile::kWarpsM;
  // ldmatrix row addresses of this lane (byte offsets in a stage).
  // K-major, per k-step ks: A matrices (rows 0-7 | 8-15) x (chunk 0 | 1) of the step; B matrices (columns 0-7,
  // chunk 0 | 1), (columns 8-15, chunk 0 | 1).  Rows advance by 16 per fragment, which leaves the swizzle bits
  // unchanged, so one offset per k-step serves every fragment (+ an immediate).
  // M-major (.trans), per fragment i: A matrices (pixels 0-7 | 8-15 of the step) x (rows 0-7 | 8-15); B
  // (columns 0-7 | 8-15) x (pixels 0-7 | 8-15).  The swizzle depends on the pixel's low 3 bits (lane % 8), the
  // chunk on the fragment, so one offset per fragment serves both k-steps (+ 16 pixel rows: an immediate).
  // TF32 backward-weight: A (per m-tile i) and B (per n-tile j) offsets at pixel tig; + 4 pixels per k half and
  // 8 per k-step are immediates.
  constexpr int kOffA = kWgrad ? MI : 2, kOffB = kWgrad ? (kTf32 ? NI : NI / 2) : 2;
  int a_off[kOffA], b_off[kOffB];
  if constexpr (kWgrad && kTf32) {
    static_assert(MI == 4 && NI == 8 && kPixA % 128 == 32 && kPixB % 128 == 32, "vec_wgrad_tf32_row / _col");
#pragma unroll
    for (int i = 0; i < MI; ++i) a_off[i] = (lane % 4) * kPixA + (wm * WM + vec_wgrad_tf32_row(lane / 4, i, 0)) * 4;
#pragma unroll
    for (int j = 0; j < NI; ++j)
      b_off[j] = BK * kPixA + (lane % 4) * kPixB + (wn * WN + vec_wgrad_tf32_col(lane / 4, j)) * 4;
  } else if constexpr (kWgrad) {
    const int pix = (lane / 16) * 8 + lane % 8;  // A: matrices 2, 3 are pixels 8-15
#pragma unroll
    for (int i = 0; i < MI; ++i) a_off[i] = pix * kPixA + ((((wm * WM + i * 16) / 8 + (lane / 8) % 2) ^ (lane % 8)) << 4);
    const int pixb = ((lane / 8) % 2) * 8 + lane % 8;  // B: matrices 1, 3 are pixels 8-15
#pragma unroll
    for (int j = 0; j < NI / 2; ++j)
      b_off[j] = BK * kPixA + pixb * kPixB + ((((wn * WN + j * 16) / 8 + lane / 16) ^ (lane % 8)) << 4);
  } else {
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      a_off[ks] = vec_swizzle(wm * WM + lane % 16, 2 * ks + lane / 16);
      b_off[ks] = BM * Tile::kRowBytes + vec_swizzle(wn * WN + (lane / 16) * 8 + lane % 8, 2 * ks + (lane / 8) % 2);
    }
  }

  float acc[MI][NI][4];
  zero_fill(acc);

  auto compute = [&](int stage_off) {
    const unsigned char* s = stages + stage_off;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {  // two MMA k-steps of 32 bytes per k-tile
      uint32_t af[MI][4], bf[NI][2];
      if constexpr (kWgrad && kTf32) {
        // k half kh: pixels tig + 4 kh of the step (a[2 kh], a[2 kh + 1]: rows g, g + 8; b[kh])
#pragma unroll
        for (int kh = 0; kh < 2; ++kh) {
#pragma unroll
          for (int i = 0; i < MI; ++i) {
            const uint2 v = *reinterpret_cast<const uint2*>(s + a_off[i] + (ks * 8 + 4 * kh) * kPixA);
            af[i][2 * kh] = v.x, af[i][2 * kh + 1] = v.y;
          }
#pragma unroll
          for (int j = 0; j < NI; ++j) bf[j][kh] = *reinterpret_cast<const uint32_t*>(s + b_off[j] + (ks * 8 + 4 * kh) * kPixB);
        }
      } else {
#pragma unroll
        for (int i = 0; i < MI; ++i) {
          if constexpr (kWgrad) arch::ldmatrix_x4_trans(af[i], s + a_off[i] + ks * 16 * kPixA);
          else arch::ldmatrix_x4(af[i], s + a_off[ks] + i * 16 * Tile::kRowBytes);
        }
#pragma unroll
        for (int j = 0; j < NI / 2; ++j) {
          uint32_t r[4];
          if constexpr (kWgrad) arch::ldmatrix_x4_trans(r, s + b_off[j] + ks * 16 * kPixB);
          else arch::ldmatrix_x4(r, s + b_off[ks] + j * 16 * Tile::kRowBytes);
          bf[2 * j][0] = r[0], bf[2 * j][1] = r[1], bf[2 * j + 1][0] = r[2], bf[2 * j + 1][1] = r[3];
        }
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
  // Backward-weight: the table part of k-tiles [c0, c0 + kVecTableTiles) is first read by the copies issued in
  // iteration c0 - (kStages - 1); it is built in iteration c0 - kVecTableTiles, after that iteration's barrier,
  // into the part whose last reader (the copies of k-tile c0 - kVecTableTiles - 1, issued kStages - 1 iterations
  // earlier) is behind that barrier; the next barrier comes before its first reader (kVecTableTiles > kStages).
  static_assert(kVecTableTiles > kStages, "the table part is built a barrier before its first reader");
  build_table(kt_begin);
  if constexpr (kWgrad) arch::sync_threads();
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) issue(kt_begin + st, st * int(L::kStageBytes));
  // byte offsets of the stage to compute and of the stage to refill, advanced by one stage per k-tile (kept as
  // running offsets: from the k-tile index the compiler re-derives every fragment address per iteration)
  constexpr int kRing = kStages * int(L::kStageBytes);
  int read_off = 0, write_off = (kStages - 1) * int(L::kStageBytes);
  auto step = [&](int kt, bool table) {
    arch::cp_async_wait<kStages - 2>();
    arch::sync_threads();
    if (table) build_table(kt + kVecTableTiles);
    issue(kt + kStages - 1, write_off);
    compute(read_off);
    read_off = read_off + int(L::kStageBytes) == kRing ? 0 : read_off + int(L::kStageBytes);
    write_off = write_off + int(L::kStageBytes) == kRing ? 0 : write_off + int(L::kStageBytes);
  };
  if constexpr (kWgrad) {
    // the first k-tile of each table part peeled off (it builds the next part), so the k-tile loop only reads
    for (int c0 = kt_begin; c0 < kt_end; c0 += kVecTableTiles) {
      step(c0, true);
      const int c1 = min(kt_end, c0 + kVecTableTiles);
      for (int kt = c0 + 1; kt < c1; ++kt) step(kt, false);
    }
  } else {
    for (int kt = kt_begin; kt < kt_end; ++kt) step(kt, false);
  }
  arch::cp_async_wait_all();  // the empty trailing groups: nothing may stay in flight at exit
  arch::sync_threads();        // row_out / col_out written by other threads

  const int bias_base = p.mode == kFwd ? g * p.Kg : g * p.Cg;
  const T* __restrict__ bias = static_cast<const T*>(p.bias);
  const bool to_ws = p.ws != nullptr;
  const int gid = lane >> 2, t4 = lane & 3;
  if constexpr (!kWgrad) {
    if (p.out_run != 0) {
      // Staged epilogue: the warp's 64 x 64 tile, 32 columns at a time, as float through its part of the stages
      // (free after the barrier above), then written along the output's contiguous side (p.out_run) in runs of
      // 16 bytes (8 16-bit elements or 4 floats) where a run is inside the GEMM, contiguous in the output and
      // aligned; element by element otherwise.
      auto staged = [&](auto along_rows) {
        constexpr bool kRows = decltype(along_rows)::value;
        // staged [kA][kLd] floats: [column][row] along rows, [row][column] along columns; the padding spreads the
        // fragment stores over the banks and keeps the runs 16-byte aligned
        constexpr int kA = kRows ? 32 : 64, kB = kRows ? 64 : 32, kLd = kB + (kRows ? 4 : 8);
        static_assert(Tile::kWarpsM * Tile::kWarpsN * kA * kLd * 4 <= kStages * int(L::kStageBytes), "fits");
        float* st = reinterpret_cast<float*>(stages) + warp * (kA * kLd);
        auto write = [&](auto out_tag, int h) {
          using Out = typename decltype(out_tag)::type;
          constexpr int kE = 16 / int(sizeof(Out)), kRuns = kB / kE, kPerStep = 32 / kRuns;
          Out* __restrict__ out = to_ws ? reinterpret_cast<Out*>(static_cast<float*>(p.ws) + split * p.ws_split_stride)
                                        : static_cast<Out*>(p.out);
          const bool aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;
#pragma unroll 2
          for (int step = 0; step < kA / kPerStep; ++step) {
            const int a = step * kPerStep + lane / kRuns, b0 = (lane % kRuns) * kE;  // staged row, first column
            const int r = wm * WM + (kRows ? b0 : a), c = wn * WN + 32 * h + (kRows ? a : b0);  // tile row, column
            const int left = kRows ? p.M - (m0 + r) : p.Ncol - (n0 + c);  // run elements inside the GEMM
            if (left <= 0 || (kRows ? n0 + c >= p.Ncol : m0 + r >= p.M)) continue;
            const long long off = row_out[r] + col_out[c];
            float v[kE];
#pragma unroll
            for (int e = 0; e < kE; e += 4) {
              const float4 f4 = *reinterpret_cast<const float4*>(st + a * kLd + b0 + e);
              v[e] = f4.x, v[e + 1] = f4.y, v[e + 2] = f4.z, v[e + 3] = f4.w;
            }
            if (!to_ws && bias) {
#pragma unroll
              for (int e = 0; e < kE; ++e) v[e] += to_compute(bias[bias_base + n0 + c + (kRows ? 0 : min(e, left - 1))]);
            }
            const long long* run_out = kRows ? row_out + r : col_out + c;  // the run's offsets along its side
            const bool whole = left >= kE && run_out[kE - 1] - run_out[0] == kE - 1 && off % kE == 0 && aligned;
            if (whole) {
              *reinterpret_cast<uint4*>(out + off) = pack16<Out>(v);
            } else {
              const long long base = kRows ? col_out[c] : row_out[r];
#pragma unroll
              for (int e = 0; e < kE; ++e)  // (unrolled: v stays in registers)
                if (e < left) out[base + run_out[e]] = from_compute<Out>(v[e]);
            }
          }
        };
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
          for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int jj = 0; jj < NI / 2; ++jj)
#pragma unroll
              for (int v = 0; v < 4; ++v) {
                const int r = i * 16 + gid + 8 * (v / 2), c = jj * 8 + t4 * 2 + v % 2;
                st[kRows ? c * kLd + r : r * kLd + c] = acc[i][h * (NI / 2) + jj][v];
              }
          arch::sync_warp();
          if (to_ws) write(std::common_type<float>{}, h);
          else write(std::common_type<T>{}, h);
          arch::sync_warp();  // the second half overwrites the staging area
        }
      };
      if (p.out_run == 1) staged(std::true_type{});
      else staged(std::false_type{});
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) {
        int r = wm * WM + i * 16 + gid + 8 * (v / 2), c = wn * WN + j * 8 + t4 * 2 + v % 2;
        if constexpr (kWgrad && kTf32)
          r = wm * WM + vec_wgrad_tf32_row(gid, i, v / 2), c = wn * WN + vec_wgrad_tf32_col(t4 * 2 + v % 2, j);
        if (m0 + r >= p.M || n0 + c >= p.Ncol) continue;
        float x = acc[i][j][v];
        const long long off = row_out[r] + col_out[c];
        if (to_ws) {  // split-K partial sums (the bias comes with their reduction)
          static_cast<float*>(p.ws)[split * p.ws_split_stride + off] = x;
          continue;
        }
        if (bias) x += to_compute(bias[bias_base + n0 + c]);
        static_cast<T*>(p.out)[off] = from_compute<T>(x);
      }
}

// Launch over p's grid (ceil(M / BM), ceil(Ncol / BN), group_count * splits); kPass matches p.mode.
template <typename T, bool kNarrow, int kPass = kVecWindow>
cudaError_t launch_igemm_vec(const IgemmParams& p, cudaStream_t stream) {
  using Tile = TileVec<kNarrow>;
  return launch_igemm_grid<conv_igemm_vec_kernel<T, kNarrow, kPass>, Tile::BM, Tile::BN>(
      p, Tile::kThreads, VecSmem<T, kNarrow, kPass>::kBytes, stream);
}

}  // namespace conv
}  // namespace deepops
