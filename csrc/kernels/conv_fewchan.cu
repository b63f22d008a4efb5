// Few-channel forward convolution on the tensor cores: C <= 4 input channels, groups 1 (the first layer of an image
// network: grey, RGB, RGBA), float16 / bfloat16 (mma m16n8k16) and float32 as TF32 (mma m16n8k8).
//
// Why a kernel of its own: the implicit GEMMs either need 16 contiguous bytes of channels (the vector kernel: 8
// channels of 16-bit) or gather their operands element by element (conv_igemm.cuh: 20-50 SASS instructions per MMA
// in its main loop).  A first layer has 1-4 channels and few multiply-adds per output (27 for 3 x 3 x 3, 147 for
// 7 x 7 x 3) against 32-64+ output channels written, so once the MMAs come cheaply it is bound by writing its
// output, which neither of those reaches.
//
// Strategy:
// * a block computes kRows (4) output rows x kCols (64) output columns of one image for BN (64) output channels;
//   each of its 4 warps one output row: MI x NI = 4 x 8 mma tiles of 16 pixels x 8 channels;
// * the block reads the input window of its tile (the halo) from global memory once, in any layout, and keeps it
//   in shared memory as pixels of kCs (2 or 4) channel slots (channels past C zero), each halo row split by column
//   phase into stride_w planes: halo column x sits in plane x % stride_w at index x / stride_w.  The tap (r, s) of
//   output column q is then at plane (s*dil_w) % stride_w, index q + (s*dil_w) / stride_w: neighbouring output
//   pixels are neighbouring halo pixels whatever the stride, so every A fragment register (two consecutive
//   reduction entries, one pixel) is one 32-bit shared load at (lane base + k offset + a compile-time immediate);
// * the reduction runs over k = tap * kCs + c (tap = r * S + s), padded with zero weights to the MMA's k (16, or 8
//   for TF32).  The byte offsets of each lane's two k halves per k-step (a table built once per block) take the
//   taps' rows, phases and dilation;  a padded entry reads tap 0, channel 0 with a zero weight (so a non-finite
//   input there gives NaN where the true output is +-Inf: the true output is non-finite either way);
// * the block's weights (64 channels, every k-step) are laid out once per block in fragment order: a lane's two B
//   registers of one n-tile are one 8-byte load, and a warp's 32 loads are 256 contiguous bytes (no conflicts);
// * per k-step a warp issues 1 k-offset load, 16 A loads, 8 B loads and 32 MMAs (sm_90: see the kernel report);
// * TF32: both operands are rounded (cvt.rna) once, as they are stored to shared memory, not per fragment;
// * bank spread: the planes and rows are padded to an odd multiple of 64 bytes, so the two taps one instruction
//   reads in different planes or rows fall in different banks;
// * epilogue: each warp stages its tile, 32 channels at a time, in shared memory (bias added, rounded) and writes
//   it along the output's contiguous dimension (pixels in NCHW, channels in NHWC) with 16-byte stores, 128
//   contiguous bytes per 8 lanes, where the runs are whole and aligned (element stores otherwise).
// conv.cu takes this kernel for every forward it can (fewchan_takes), before the implicit GEMMs.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "arch/launch.h"
#include "arch/memory.h"
#include "arch/mma.h"
#include "arch/sync.h"
#include "conv_common.cuh"
#include "device_utils.cuh"

namespace deepops {
namespace conv {
namespace {

struct FewChanTile {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps;
  static constexpr int kRows = kWarps;  // output rows per block, one per warp
  static constexpr int kCols = 64;      // output columns per block: MI m-tiles of 16 per warp
  static constexpr int BN = 64;         // output channels per block: NI n-tiles of 8
  static constexpr int MI = kCols / 16, NI = BN / 8;
  static constexpr int kMinBlocks = 2;  // launch-bounds occupancy target (<= 255 registers: 128 accumulators)
};
// Shared memory a block may take: what every sm_80+ GPU grants one block (sm_86 / sm_89: 99 KiB); larger windows
// (an 11 x 11 kernel with stride 4 in float32) go to the implicit GEMM.
constexpr int64_t kFewChanMaxSmem = 96 * 1024;
constexpr int kFewChanMaxChannels = 4;

// The shared-memory layout of one launch (fewchan_layout), with the shape: everything the kernel reads.
struct FewChanArgs {
  DirectParams p;
  int cs = 4, ksteps = 0;         // channel slots per halo pixel; MMA k-steps of the reduction
  int rows = 0, cols = 0;         // halo rows and columns (all phases)
  int plane_bytes = 0, row_bytes = 0;
  int bfrag_off = 0, koff_off = 0, smem = 0;  // byte offsets of the B fragments and the k-offset table; total
  int tiles_q = 1, tiles_per_image = 1;       // column tiles per row band; tiles per image
  bool y_aligned = false;                     // y 16-byte aligned (the epilogue's vector stores)
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;
  void* y = nullptr;
};

// The layout for dtype dt (element size es, MMA k-step kstep, staging bytes of the epilogue stage); false when it
// does not fit kFewChanMaxSmem.
bool fewchan_layout(const DirectParams& p, int es, int kstep, int64_t stage, FewChanArgs& a) {
  a.p = p;
  a.cs = p.C <= 2 ? 2 : 4;
  const int64_t red = int64_t(p.R) * p.S * a.cs;
  const int64_t rows = int64_t(FewChanTile::kRows - 1) * p.sh + int64_t(p.R - 1) * p.dh + 1;
  const int64_t cols = int64_t(FewChanTile::kCols - 1) * p.sw + int64_t(p.S - 1) * p.dw + 1;
  const int64_t plane_cols = (cols + p.sw - 1) / p.sw;
  auto odd64 = [](int64_t b) {  // rounded up to an odd multiple of 64 bytes
    b = (b + 63) / 64 * 64;
    return b % 128 == 0 ? b + 64 : b;
  };
  const int64_t plane = odd64(plane_cols * a.cs * es);
  const int64_t row = p.sw % 2 == 0 ? plane * p.sw + 64 : plane * p.sw;
  const int64_t ksteps = (red + kstep - 1) / kstep;
  const int64_t halo = rows * row;
  const int64_t bfrag = ksteps * FewChanTile::NI * 32 * 8;
  const int64_t smem = std::max(halo + bfrag + ksteps * 4 * 8, stage);  // the epilogue reuses it all
  if (smem > kFewChanMaxSmem) return false;
  a.ksteps = int(ksteps), a.rows = int(rows), a.cols = int(cols);
  a.plane_bytes = int(plane), a.row_bytes = int(row);
  a.bfrag_off = int(halo), a.koff_off = int(halo + bfrag), a.smem = int(smem);
  a.tiles_q = (p.Q + FewChanTile::kCols - 1) / FewChanTile::kCols;
  const int64_t per_image = int64_t((p.P + FewChanTile::kRows - 1) / FewChanTile::kRows) * a.tiles_q;
  if (per_image * p.N > INT_MAX || (p.K + FewChanTile::BN - 1) / FewChanTile::BN > arch::kMaxGridYZ) return false;
  a.tiles_per_image = int(per_image);
  return true;
}

// Byte offset in the halo of reduction entry (tap, c) from the lane's pixel (taps past R*S: tap 0, channel 0).
template <int kCs, int kES> __device__ __forceinline__ int fewchan_k_offset(const FewChanArgs& a, int tap, int c) {
  const DirectParams& p = a.p;
  if (tap >= p.R * p.S) tap = 0, c = 0;
  const int r = tap / p.S, s = tap % p.S;
  const int sx = s * p.dw;
  return r * p.dh * a.row_bytes + (sx % p.sw) * a.plane_bytes + (sx / p.sw) * (kCs * kES) + c * kES;
}

// The operand bits of one element as the MMA takes them: 16-bit as stored, float32 rounded to TF32.
template <typename T> __device__ __forceinline__ uint32_t operand_bits(T v) {
  if constexpr (std::is_same<T, float>::value) return arch::cvt_rna_tf32(v);
  else {
    uint16_t b;
    static_assert(sizeof(T) == 2, "16-bit");
    memcpy(&b, &v, 2);
    return b;
  }
}

// The epilogue's staging area of one warp: half of its 64 x 64 tile (32 channels) as kRows x kCols elements of T,
// the output's contiguous dimension along the kCols (pixels when kAlongQ: NCHW; channels otherwise), rows padded
// by 16 bytes (16-byte aligned, and the fragment stores spread over the banks).
template <typename T, bool kAlongQ> struct FewChanStage {
  static constexpr int kVec = 16 / int(sizeof(T));
  static constexpr int kRows = kAlongQ ? 32 : 64, kCols = kAlongQ ? 64 : 32, kLd = kCols + kVec;
  static constexpr int kElems = kRows * kLd;
};
template <typename T> constexpr int fewchan_stage_bytes() {
  constexpr int a = FewChanStage<T, true>::kElems, b = FewChanStage<T, false>::kElems;
  return FewChanTile::kWarps * (a > b ? a : b) * int(sizeof(T));
}

// Adds the bias, rounds to T and writes the warp's accumulators (output row `row` offset, columns q0 + [0, 64),
// channels n0 + [0, 64)) through its staging area.
template <typename T, bool kAlongQ>
__device__ __forceinline__ void fewchan_epilogue(const FewChanArgs& a, const float (&acc)[FewChanTile::MI][FewChanTile::NI][4],
                                                 unsigned char* smem, int warp, int lane, long long row, int q0, int n0) {
  using St = FewChanStage<T, kAlongQ>;
  constexpr int kVec = St::kVec, kLd = St::kLd, kRuns = St::kCols / kVec, kRowsPerStep = 32 / kRuns;
  constexpr int NI2 = FewChanTile::NI / 2;
  const DirectParams& p = a.p;
  T* __restrict__ y = static_cast<T*>(a.y);
  const T* __restrict__ bias = static_cast<const T*>(a.bias);
  T* st = reinterpret_cast<T*>(smem) + warp * St::kElems;
  const int gid = lane / 4, t4 = lane % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int i = 0; i < FewChanTile::MI; ++i)
#pragma unroll
      for (int jj = 0; jj < NI2; ++jj)
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          const int m = 16 * i + gid + 8 * (v / 2), c = 8 * jj + 2 * t4 + v % 2;  // pixel, channel of the half
          const int k = n0 + 32 * h + c;
          float out = acc[i][h * NI2 + jj][v];
          if (bias && k < p.K) out += float(to_compute(bias[k]));
          st[kAlongQ ? c * kLd + m : m * kLd + c] = from_compute<T>(out);
        }
    arch::sync_warp();
#pragma unroll
    for (int step = 0; step < St::kRows / kRowsPerStep; ++step) {
      const int r = step * kRowsPerStep + lane / kRuns, c0 = (lane % kRuns) * kVec;
      const int k = n0 + 32 * h + (kAlongQ ? r : c0), q = q0 + (kAlongQ ? c0 : r);
      const int left = kAlongQ ? p.Q - q : p.K - k;  // elements of the run inside the output (stride 1)
      if (left <= 0 || (kAlongQ ? k >= p.K : q >= p.Q)) continue;
      const long long off = row + static_cast<long long>(k) * p.yC + static_cast<long long>(q) * p.yW;
      const T* src = st + r * kLd + c0;
      if (a.y_aligned && left >= kVec && off % kVec == 0) {
        *reinterpret_cast<uint4*>(y + off) = *reinterpret_cast<const uint4*>(src);
      } else {
#pragma unroll 1
        for (int e = 0; e < kVec && e < left; ++e) y[off + e] = src[e];
      }
    }
    arch::sync_warp();  // the second half overwrites the staging area
  }
}

template <typename T, int kCs>
__global__ void __launch_bounds__(FewChanTile::kThreads, FewChanTile::kMinBlocks)
    conv_fewchan_kernel(const FewChanArgs a) {
  using Tile = FewChanTile;
  constexpr bool kTf32 = std::is_same<T, float>::value;
  constexpr int kES = int(sizeof(T));
  constexpr int kKStep = kTf32 ? 8 : 16;
  constexpr int kPixel = kCs * kES;  // bytes of one halo pixel
  constexpr int MI = Tile::MI, NI = Tile::NI, kThreads = Tile::kThreads;
  static_assert(kTf32 || kES == 2, "16-bit or TF32");
  static_assert(kCs == 2 || kCs == 4, "channel slots");
  const DirectParams& p = a.p;

  DEEPOPS_DYNAMIC_SHARED(unsigned char, smem);
  unsigned char* halo = smem;
  uint2* bfrag = reinterpret_cast<uint2*>(smem + a.bfrag_off);  // [ksteps][NI][32 lanes]
  int2* koff = reinterpret_cast<int2*>(smem + a.koff_off);      // [ksteps][4 (lane % 4)]: (low, high) k half

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, gid = lane / 4, t4 = lane % 4;
  // blockIdx.x: (image, row band, column tile), the column tile fastest; blockIdx.y: the 64-channel block
  const int tile = blockIdx.x % a.tiles_per_image, n = blockIdx.x / a.tiles_per_image;
  const int p0 = (tile / a.tiles_q) * Tile::kRows, q0 = (tile % a.tiles_q) * Tile::kCols;
  const int n0 = blockIdx.y * Tile::BN;
  const T* __restrict__ x = static_cast<const T*>(a.x);
  const T* __restrict__ w = static_cast<const T*>(a.w);
  const int taps = p.R * p.S;

  // The k-offset table and the B fragments (the weight is dense KCRS: element (n, c, tap) at (n * C + c) * taps +
  // tap), once per block.  Reduction entry k = tap * kCs + c; the MMA's fragment layout (arch/mma.h): lane (gid,
  // t4) holds k = 2 t4 (+1) and 2 t4 + 8 (+1) of column gid for m16n8k16, k = t4 and t4 + 4 for m16n8k8.
  auto k_of = [&](int ks, int half, int t) { return ks * kKStep + (kTf32 ? t + 4 * half : 2 * t + 8 * half); };
  for (int i = tid; i < a.ksteps * 4; i += kThreads) {
    const int ks = i / 4, t = i % 4, k0 = k_of(ks, 0, t), k1 = k_of(ks, 1, t);
    koff[i] = make_int2(fewchan_k_offset<kCs, kES>(a, k0 / kCs, k0 % kCs),
                        fewchan_k_offset<kCs, kES>(a, k1 / kCs, k1 % kCs));
  }
  auto weight = [&](int n, int k) -> uint32_t {
    const int tap = k / kCs, c = k % kCs;
    if (n >= p.K || c >= p.C || tap >= taps) return 0;
    return operand_bits<T>(w[(static_cast<long long>(n) * p.C + c) * taps + tap]);
  };
  for (int i = tid; i < a.ksteps * NI * 32; i += kThreads) {
    const int l = i % 32, j = (i / 32) % NI, ks = i / (32 * NI);
    const int n = n0 + 8 * j + l / 4, t = l % 4;
    uint32_t r[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int k = k_of(ks, half, t);
      r[half] = kTf32 ? weight(n, k) : weight(n, k) | (weight(n, k + 1) << 16);
    }
    bfrag[i] = make_uint2(r[0], r[1]);
  }

  // A of this lane: output row p0 + warp (halo row warp * stride_h), column q0 + gid (+ 16 i + 8 h: immediates)
  const unsigned char* a_base = halo + warp * p.sh * a.row_bytes + gid * kPixel;
  const int pp = p0 + warp;
  {
    // The halo: rows p0 * sh - ph + [0, rows), columns q0 * sw - pw + [0, cols); threads along the columns, so
    // NCHW reads coalesce (NHWC ones are kCs * elements apart at most).  Zero outside the image and past C.
    const int y0 = p0 * p.sh - p.ph, x0 = q0 * p.sw - p.pw;
    const long long img = static_cast<long long>(n) * p.xN;
    for (int i = tid; i < a.rows * a.cols; i += kThreads) {
      const int hy = i / a.cols, hx = i % a.cols;
      const int iy = y0 + hy, ix = x0 + hx;
      const bool in = iy >= 0 && iy < p.H && ix >= 0 && ix < p.W;
      const long long off = img + static_cast<long long>(iy) * p.xH + static_cast<long long>(ix) * p.xW;
      uint32_t v[kCs];
#pragma unroll
      for (int c = 0; c < kCs; ++c) v[c] = in && c < p.C ? operand_bits<T>(x[off + c * p.xC]) : 0u;
      unsigned char* dst = halo + hy * a.row_bytes + (hx % p.sw) * a.plane_bytes + (hx / p.sw) * kPixel;
      if constexpr (kTf32) {
        if constexpr (kCs == 4) *reinterpret_cast<uint4*>(dst) = make_uint4(v[0], v[1], v[2], v[3]);
        else *reinterpret_cast<uint2*>(dst) = make_uint2(v[0], v[1]);
      } else {
        if constexpr (kCs == 4) *reinterpret_cast<uint2*>(dst) = make_uint2(v[0] | (v[1] << 16), v[2] | (v[3] << 16));
        else *reinterpret_cast<uint32_t*>(dst) = v[0] | (v[1] << 16);
      }
    }
    arch::sync_threads();  // the halo and the tables are written

    float acc[MI][NI][4];
    zero_fill(acc);
    for (int ks = 0; ks < a.ksteps; ++ks) {
      const int2 ko = koff[ks * 4 + t4];
      const unsigned char* lo = a_base + ko.x;
      const unsigned char* hi = a_base + ko.y;
      uint32_t af[MI][4];
#pragma unroll
      for (int i = 0; i < MI; ++i) {  // rows gid, gid + 8 of m-tile i: pixels 16 i and 16 i + 8 on
        af[i][0] = *reinterpret_cast<const uint32_t*>(lo + (16 * i) * kPixel);
        af[i][1] = *reinterpret_cast<const uint32_t*>(lo + (16 * i + 8) * kPixel);
        af[i][2] = *reinterpret_cast<const uint32_t*>(hi + (16 * i) * kPixel);
        af[i][3] = *reinterpret_cast<const uint32_t*>(hi + (16 * i + 8) * kPixel);
      }
      const uint2* bk = bfrag + ks * (NI * 32) + lane;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const uint2 b2 = bk[j * 32];
        const uint32_t bf[2] = {b2.x, b2.y};
#pragma unroll
        for (int i = 0; i < MI; ++i) {
          if constexpr (kTf32) arch::mma_m16n8k8_tf32(acc[i][j], af[i], bf);
          else arch::mma_m16n8k16<T>(acc[i][j], af[i], bf);
        }
      }
    }

    // Epilogue: the warp's 64 pixels x 64 channels, in two halves of 32 channels, through its part of shared
    // memory (the halo's, free after the barrier), then written along the output's contiguous dimension, pixels
    // (NCHW) or channels (NHWC): 16 bytes per lane where the run is whole and aligned, else element by element.
    arch::sync_threads();
    if (pp < p.P) {
      const long long row = static_cast<long long>(n) * p.yN + static_cast<long long>(pp) * p.yH;
      if (p.nhwc) fewchan_epilogue<T, false>(a, acc, smem, warp, lane, row, q0, n0);
      else fewchan_epilogue<T, true>(a, acc, smem, warp, lane, row, q0, n0);
    }
  }
}

template <typename T, int kCs> cudaError_t launch_fewchan(const FewChanArgs& a, cudaStream_t stream) {
  cudaError_t err = arch::allow_dynamic_smem<conv_fewchan_kernel<T, kCs>>(a.smem);
  if (err != cudaSuccess) return err;
  // (fewchan_layout checked both extents)
  const unsigned gx = static_cast<unsigned>(int64_t(a.tiles_per_image) * a.p.N);
  const unsigned gy = static_cast<unsigned>((a.p.K + FewChanTile::BN - 1) / FewChanTile::BN);
  return arch::launch<conv_fewchan_kernel<T, kCs>>(dim3(gx, gy), FewChanTile::kThreads,
                                                   a.smem, stream, a);
}

template <typename T> cudaError_t launch_fewchan_cs(const FewChanArgs& a, cudaStream_t stream) {
  return a.cs == 2 ? launch_fewchan<T, 2>(a, stream) : launch_fewchan<T, 4>(a, stream);
}

bool fewchan_plan(DType dt, bool allow_tf32, const DirectParams& p, FewChanArgs& a) {
  const bool tc16 = dt == DType::kFloat16 || dt == DType::kBFloat16;
  if (!(tc16 || (dt == DType::kFloat32 && allow_tf32)) || p.C > kFewChanMaxChannels) return false;
  if (arch::compute_capability_major() < 8) return false;
  const int64_t stage = tc16 ? fewchan_stage_bytes<__half>() : fewchan_stage_bytes<float>();
  return fewchan_layout(p, tc16 ? 2 : 4, tc16 ? 16 : 8, stage, a);
}

}  // namespace

bool fewchan_takes(DType dt, bool allow_tf32, const ConvShape& s, const DirectParams& p) {
  FewChanArgs a;
  return s.groups == 1 && fewchan_plan(dt, allow_tf32, p, a);
}

cudaError_t fewchan_forward(DType dt, bool allow_tf32, const DirectParams& p, const void* x, const void* w,
                            const void* bias, void* y, cudaStream_t stream) {
  FewChanArgs a;
  if (!fewchan_plan(dt, allow_tf32, p, a)) return cudaErrorInvalidValue;
  a.x = x, a.w = w, a.bias = bias, a.y = y;
  a.y_aligned = reinterpret_cast<uintptr_t>(y) % 16 == 0;
  switch (dt) {
    case DType::kFloat16: return launch_fewchan_cs<__half>(a, stream);
    case DType::kBFloat16: return launch_fewchan_cs<__nv_bfloat16>(a, stream);
    case DType::kFloat32: return launch_fewchan_cs<float>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace conv
}  // namespace deepops
