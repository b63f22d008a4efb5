// Convolution launchers: validity, path choice, workspace sizing and the parameter set-up of the kernels.
//
// Paths (docs/conv_cuda.md has the reasoning):
//   C/groups == 1 (depthwise, and single-channel first layers: C == 1, groups == 1)
//       -> conv_direct.cu: direct kernels for forward, backward-input and backward-weight (split reduction).
//   otherwise -> the implicit GEMM of conv_igemm.cuh, per group:
//       float16 / bfloat16                    tensor cores, mma m16n8k16, float32 accumulation
//       float32 and allow_tf32 (cc >= 8.0)    tensor cores, mma m16n8k8 TF32
//       float32 otherwise                     FFMA
//       float64                               DFMA
//     1x1 convolutions need no separate kernel: the reduction index fuses (c, r, s), so a 1x1 convolution is a
//     plain GEMM.
//   Forward with C <= 4, groups 1 (first layers), float16 / bfloat16 / TF32 -> conv_fewchan.cu (before all of
//     the above, C == 1 included): the input window in shared memory, fragments by one 32-bit shared load each,
//     the weights in fragment order; no workspace.  Larger windows than its shared memory holds, float32 without
//     TF32 and float64 take the paths above.
//     Backward-input with a stride > 1 runs as stride_h * stride_w phase GEMMs (kDgradPhase): the dx pixels of
//     one phase (h % stride_h, w % stride_w) are reached by a fixed subset of the taps, so each phase is a plain
//     window GEMM over only those taps (no divisibility test, no products with the zeros a strided gather would
//     fetch: 1/4 of the work of the gather for stride 2).
//     The 16-byte vector kernel (conv_igemm_vec.cuh) when 16 bytes of the reduction are contiguous in both
//     operands: float16 / bfloat16 / TF32 forward with C/g a multiple of 8 (4 for TF32) and backward-input with
//     K/g a multiple of 8 (4), any stride and groups; backward-weight with both.  Its workspace holds the
//     weight transposed (KRSC for forward, per-group CRSK for backward-input) and, for NCHW, the activation
//     operands transposed to NHWC (as cuDNN does); outputs are written in the caller's layout directly.
//     GEMMs of <= 64 columns (64 output channels, ...) take the narrow 128 x 64 tensor-core tiles.
//   Backward-weight with K/groups <= 64 runs transposed (dw^T = x^T dy: C/g*R*S rows, K/g columns) so that the
//   narrow tiles fit it.
//   Split-K (split_plan): backward-weight splits its N*P*Q reduction when the output tiles alone would not fill
//   the GPU; forward and stride-1 backward-input split reductions longer than 512 of an underfilled grid.  Each
//   split writes its partial tile to the workspace, reduce_splits adds them in split order (and the bias).  The plan depends on the shape only (not on the device or the tile configuration), so a result is
//   bitwise reproducible run to run and between GPUs running the same kernel.
//   Bias gradient: conv_direct.cu's two-pass reduction.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>

#include "arch/launch.h"
#include "conv.h"
#include "conv_common.cuh"

namespace deepops {

using conv::IgemmParams;

namespace {

constexpr int64_t kMax32 = INT_MAX - 1024;  // GEMM indices run up to a tile past their extent
constexpr int64_t kMaxCoord = int64_t(1) << 29;   // window coordinates stay far from conv::kInvalidCoord
constexpr int64_t kSplitTargetBlocks = 264;   // ~2 waves of 132 SMs: what split-K aims for
constexpr int64_t kSplitNominalTile = 128;    // tile edge used for the (tile-independent) split plan
constexpr int64_t kSplitChunkQuantum = 32;    // split chunks are multiples of every config's BK
constexpr int64_t kWgradMinChunk = 256;       // backward-weight: pixels per split at least
constexpr int64_t kWgradMaxSplits = 64;
// forward / backward-input: a split costs a pass over the output (partial sums in and out), so only long
// reductions of an underfilled grid are split
constexpr int64_t kWindowMinChunk = 512;
constexpr int64_t kWindowMaxSplits = 16;

bool is_depthwise(const ConvShape& s) { return s.C / s.groups == 1; }

// Split-K of an implicit GEMM of `tiles` nominal 128 x 128 tiles and a reduction of `reduction`: enough splits to
// give about kSplitTargetBlocks blocks, each at least min_chunk long.  Shape only (not the device or the tile
// configuration), so results are bitwise reproducible run to run and between GPUs running the same kernel.
struct SplitPlan {
  int splits = 1;
  int64_t chunk = 0;  // reduction elements per split (a multiple of kSplitChunkQuantum)
};

SplitPlan split_plan(int64_t tiles, int64_t reduction, int64_t min_chunk, int64_t max_splits) {
  const int64_t want = std::min<int64_t>(max_splits, std::max<int64_t>(1, (kSplitTargetBlocks + tiles - 1) / tiles));
  int64_t chunk = (reduction + want - 1) / want;
  chunk = std::max(min_chunk, (chunk + kSplitChunkQuantum - 1) / kSplitChunkQuantum * kSplitChunkQuantum);
  SplitPlan plan;
  plan.chunk = chunk;
  plan.splits = std::max(1, static_cast<int>((reduction + chunk - 1) / chunk));
  return plan;
}

int64_t nominal_tiles(int64_t rows, int64_t cols, int64_t groups) {
  return ((rows + kSplitNominalTile - 1) / kSplitNominalTile) * ((cols + kSplitNominalTile - 1) / kSplitNominalTile) *
         groups;
}

// Backward-weight: the N*P*Q reduction of dw (K/g x C/g*R*S per group).
SplitPlan wgrad_plan(const ConvShape& s) {
  const int64_t cg = s.C / s.groups, kg = s.K / s.groups;
  return split_plan(nominal_tiles(kg, cg * s.R * s.S, s.groups), s.N * s.P * s.Q, kWgradMinChunk, kWgradMaxSplits);
}

// Forward (reduction C/g*R*S over N*P*Q x K/g) and stride-1 backward-input (K/g*R*S over N*H*W x C/g); strided
// backward-input runs as phase GEMMs and is not split.
SplitPlan window_plan(ConvPass pass, const ConvShape& s) {
  const int64_t cg = s.C / s.groups, kg = s.K / s.groups;
  if (pass == ConvPass::kForward)
    return split_plan(nominal_tiles(s.N * s.P * s.Q, kg, s.groups), cg * s.R * s.S, kWindowMinChunk, kWindowMaxSplits);
  if (s.stride_h != 1 || s.stride_w != 1) return SplitPlan{};
  return split_plan(nominal_tiles(s.N * s.H * s.W, cg, s.groups), kg * s.R * s.S, kWindowMinChunk, kWindowMaxSplits);
}

void strides(const ConvShape& s, ConvLayout layout, int64_t C, int64_t H, int64_t W, long long& sn, long long& sc,
             long long& sh, long long& sw) {
  if (layout == ConvLayout::kNHWC) sn = H * W * C, sc = 1, sh = W * C, sw = C;
  else sn = C * H * W, sc = H * W, sh = W, sw = 1;
  (void)s;
}

// Runs the implicit GEMM over all groups, in launches of at most 65535 / splits groups (grid.z).
// plan.splits > 1: p.ws (the partial sums) and p.ws_split_stride set by the caller, which adds them up after.
cudaError_t run_igemm(DType dt, bool allow_tf32, IgemmParams p, cudaStream_t stream, bool vec = false,
                      SplitPlan plan = SplitPlan{}) {
  const int major = arch::compute_capability_major();
  const bool tc16 = dt == DType::kFloat16 || dt == DType::kBFloat16;
  if (tc16 && major < 8) return cudaErrorNotSupported;
  const bool tc = tc16 || (dt == DType::kFloat32 && allow_tf32 && major >= 8);
  int bm, bn, bk;
  conv::igemm_tiles(dt, tc && dt == DType::kFloat32, bm, bn, bk);
  conv::set_k_affine(p);
  p.out_run = conv::out_run_of(p);
  const bool window = p.mode != conv::kWgrad && p.mode != conv::kWgradT;
  if (vec && window && !conv::vec_offsets_fit(p)) vec = false;  // the gather takes the same (transposed) operands
  const int ktiles = (p.Kred + bk - 1) / bk;
  p.splits = plan.splits;
  p.ktiles_per_split = plan.splits > 1 ? static_cast<int>(plan.chunk / bk) : ktiles;
  const int per_launch = std::max(1, 65535 / p.splits);
  for (int g0 = 0; g0 < p.groups; g0 += per_launch) {
    p.group0 = g0;
    p.group_count = std::min(per_launch, p.groups - g0);
    const cudaError_t err = tc ? conv::launch_igemm_tc(dt, p.Ncol <= conv::kNarrowMaxCols, vec, p, stream)
                               : conv::launch_igemm_simt(dt, p, stream);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

// The vector kernel (conv_igemm_vec.cuh) needs 16 bytes of the reduction contiguous in both operands: 8 channels of
// float16 / bfloat16, 4 of float32 as TF32 (0: no vector kernel for this dtype).
int vec_elems(DType dt, bool allow_tf32) {
  if (dt == DType::kFloat16 || dt == DType::kBFloat16) return 8;
  return dt == DType::kFloat32 && allow_tf32 ? 4 : 0;
}
size_t elem_bytes(DType dt) { return dt == DType::kFloat64 ? 8 : dt == DType::kFloat32 ? 4 : 2; }
size_t round256(size_t n) { return (n + 255) / 256 * 256; }
// An activation (N x C x H x W) transposed to NHWC in the vector path's workspace.
size_t vec_copy_bytes(DType dt, int64_t N, int64_t C, int64_t H, int64_t W) {
  return round256(size_t(N * C * H * W) * elem_bytes(dt));
}
// The weight transposed for the vector path, at the start of its part of the workspace.
size_t vec_weight_bytes(DType dt, const ConvShape& s) {
  return round256(size_t(s.K * (s.C / s.groups) * s.R * s.S) * elem_bytes(dt));
}

// The vector path's workspace: the weight transposed (KRSC for forward, per-group CRSK for backward-input), then,
// for an NCHW operand A (x for forward, dy for backward-input), A transposed to NHWC.  0 when the path cannot take
// the shape (the reduction's channel count, C/g or K/g, not a multiple of vec_elems).
size_t vec_workspace(ConvPass pass, DType dt, const ConvShape& s, ConvLayout layout, bool allow_tf32) {
  const int e = vec_elems(dt, allow_tf32);
  if (e == 0 || is_depthwise(s)) return 0;
  if (pass == ConvPass::kBackwardWeight) return 0;  // vec_wgrad_eligible / vec_wgrad_bytes
  const int64_t red_channels = pass == ConvPass::kForward ? s.C / s.groups : s.K / s.groups;
  if (red_channels % e != 0) return 0;
  size_t bytes = vec_weight_bytes(dt, s);
  if (layout == ConvLayout::kNCHW)
    bytes += pass == ConvPass::kForward ? vec_copy_bytes(dt, s.N, s.C, s.H, s.W) : vec_copy_bytes(dt, s.N, s.K, s.P, s.Q);
  return bytes;
}

// Backward-weight's vector path: 16 bytes contiguous along both GEMM sides (K/g and C/g multiples of 8 in 16-bit,
// of 4 in TF32), x and dy of fewer than 2^31 elements.  Its workspace: NCHW dy and x transposed to NHWC, after the
// split-K partial sums.
bool vec_wgrad_eligible(DType dt, const ConvShape& s, bool allow_tf32) {
  const int e = vec_elems(dt, allow_tf32);
  // its x entries and dy offsets are 32-bit element offsets (dy's reach a k-tile past the last pixel)
  const bool fits = s.N * s.C * s.H * s.W <= kMax32 && s.N * s.K * s.P * s.Q + 64 * s.K <= kMax32;
  return e != 0 && fits && !is_depthwise(s) && (s.K / s.groups) % e == 0 && (s.C / s.groups) % e == 0;
}
size_t vec_wgrad_bytes(DType dt, const ConvShape& s, ConvLayout layout, bool allow_tf32) {
  if (!vec_wgrad_eligible(dt, s, allow_tf32) || layout == ConvLayout::kNHWC) return 0;
  return vec_copy_bytes(dt, s.N, s.K, s.P, s.Q) + vec_copy_bytes(dt, s.N, s.C, s.H, s.W);
}

// Whether the vector path runs: its workspace given, the device an sm_80+, the NHWC operand 16-byte aligned.
bool vec_usable(size_t need, void* workspace, size_t workspace_bytes, const void* a, ConvLayout layout) {
  return need && workspace && workspace_bytes >= need && reinterpret_cast<uintptr_t>(workspace) % 16 == 0 &&
         (layout == ConvLayout::kNCHW || reinterpret_cast<uintptr_t>(a) % 16 == 0) &&
         arch::compute_capability_major() >= 8;
}

// Puts the vector path's operand A (x or dy: N x C x H x W in `layout`) in NHWC: itself, or its transposition in
// the workspace after the weight (at `at`).
cudaError_t vec_operand(DType dt, const void* a, int64_t N, int64_t C, int64_t H, int64_t W, ConvLayout layout,
                        void* at, const void*& nhwc, cudaStream_t stream) {
  nhwc = a;
  if (layout == ConvLayout::kNHWC) return cudaSuccess;
  nhwc = at;
  return conv::transpose_batched(dt, a, at, N, C, H * W, stream);
}

// Bytes of the split-K partial sums of an output of `outputs` elements (0 without splits), at the start of the
// pass's workspace.
size_t split_bytes(DType dt, const SplitPlan& plan, int64_t outputs) {
  if (plan.splits <= 1) return 0;
  return round256(size_t(plan.splits) * size_t(outputs) * conv::acc_bytes(dt));
}
int64_t pass_outputs(ConvPass pass, const ConvShape& s) {
  if (pass == ConvPass::kForward) return s.N * s.K * s.P * s.Q;
  if (pass == ConvPass::kBackwardInput) return s.N * s.C * s.H * s.W;
  return s.K * (s.C / s.groups) * s.R * s.S;
}

// A pass's workspace: the split-K partial sums first (when the plan splits and the workspace holds them; else the
// pass runs unsplit), then the rest (the vector path's operands).
struct PassWorkspace {
  SplitPlan plan;
  void* partial = nullptr;
  int64_t outputs = 0;
  char* rest = nullptr;
  size_t rest_bytes = 0;
};
PassWorkspace pass_workspace(const SplitPlan& plan, DType dt, int64_t outputs, void* workspace, size_t bytes) {
  PassWorkspace w;
  w.outputs = outputs;
  w.rest = static_cast<char*>(workspace);
  w.rest_bytes = workspace ? bytes : 0;
  const size_t part = split_bytes(dt, plan, outputs);
  if (part && w.rest_bytes >= part) {
    w.plan = plan, w.partial = workspace;
    w.rest += part, w.rest_bytes -= part;
  }
  return w;
}

// Runs the implicit GEMM of p with ws's split plan: the splits write partial sums, which reduce_splits adds in
// split order into p.out, with the bias (channels: the output's; inner: its plane in NCHW, 1 in NHWC).
cudaError_t run_pass(DType dt, bool allow_tf32, IgemmParams p, cudaStream_t stream, bool vec, const PassWorkspace& ws,
                     int64_t channels = 0, int64_t inner = 1) {
  const void* bias = p.bias;
  if (ws.plan.splits > 1) p.ws = ws.partial, p.ws_split_stride = ws.outputs, p.bias = nullptr;
  const cudaError_t err = run_igemm(dt, allow_tf32, p, stream, vec, ws.plan);
  if (err != cudaSuccess || ws.plan.splits <= 1) return err;
  return conv::reduce_splits(dt, ws.partial, ws.plan.splits, ws.outputs, p.out, stream, bias, channels, inner);
}

bool check_workspace(size_t need, const void* ws, size_t bytes) { return need == 0 || (ws != nullptr && bytes >= need); }

}  // namespace

namespace conv {

IgemmParams make_igemm(int mode, const ConvShape& s, ConvLayout layout) {
  IgemmParams p;
  p.mode = mode;
  p.nhwc = layout == ConvLayout::kNHWC;
  p.N = int(s.N), p.C = int(s.C), p.H = int(s.H), p.W = int(s.W), p.K = int(s.K), p.R = int(s.R), p.S = int(s.S);
  p.P = int(s.P), p.Q = int(s.Q);
  p.groups = s.groups, p.Cg = int(s.C / s.groups), p.Kg = int(s.K / s.groups);
  p.sh = s.stride_h, p.sw = s.stride_w, p.ph = s.pad_h, p.pw = s.pad_w, p.dh = s.dil_h, p.dw = s.dil_w;
  strides(s, layout, s.C, s.H, s.W, p.xN, p.xC, p.xH, p.xW);
  strides(s, layout, s.K, s.P, s.Q, p.yN, p.yC, p.yH, p.yW);
  p.wS = 1, p.wR = s.S, p.wC = s.R * s.S, p.wK = p.Cg * s.R * s.S, p.wG = p.Kg * p.wK;
  p.div_rs = FastDivmod(s.R * s.S);
  p.div_s = FastDivmod(s.S);
  if (mode == kFwd) {
    p.M = int(s.N * s.P * s.Q), p.Ncol = p.Kg, p.Kred = int(p.Cg * s.R * s.S);
    p.div_plane = FastDivmod(s.P * s.Q), p.div_row = FastDivmod(s.Q), p.div_ch = FastDivmod(p.Cg);
    p.a_lim_h = p.H, p.a_lim_w = p.W;
    p.a_kfast = p.nhwc, p.b_kfast = true;
  } else if (mode == kDgrad) {
    p.M = int(s.N * s.H * s.W), p.Ncol = p.Cg, p.Kred = int(p.Kg * s.R * s.S);
    p.div_plane = FastDivmod(s.H * s.W), p.div_row = FastDivmod(s.W), p.div_ch = FastDivmod(p.Kg);
    p.a_lim_h = p.P, p.a_lim_w = p.Q;
    p.a_kfast = p.nhwc, p.b_kfast = true;
  } else if (mode == kWgrad) {
    p.M = p.Kg, p.Ncol = int(p.Cg * s.R * s.S), p.Kred = int(s.N * s.P * s.Q);
    p.div_plane = FastDivmod(s.P * s.Q), p.div_row = FastDivmod(s.Q), p.div_ch = FastDivmod(p.Cg);
    p.b_lim_h = p.H, p.b_lim_w = p.W;
    p.a_kfast = !p.nhwc, p.b_kfast = !p.nhwc;
  } else {  // kWgradT
    p.M = int(p.Cg * s.R * s.S), p.Ncol = p.Kg, p.Kred = int(s.N * s.P * s.Q);
    p.div_plane = FastDivmod(s.P * s.Q), p.div_row = FastDivmod(s.Q), p.div_ch = FastDivmod(p.Cg);
    p.a_lim_h = p.H, p.a_lim_w = p.W;
    p.a_kfast = !p.nhwc, p.b_kfast = !p.nhwc;
  }
  return p;
}

void set_k_affine(IgemmParams& p) {
  KAffine f;
  if (p.mode == kFwd) {  // x at (row.h + r*dil, row.w + s*dil); weight (k, c, r, s)
    f.hstep = p.dh, f.wstep = p.dw;
    f.a_c = p.xC, f.a_h = p.xH, f.a_w = p.xW;
    f.b_c = p.wC, f.b_i = p.wR, f.b_j = p.wS;
  } else if (p.mode == kDgrad) {  // stride 1: dy at (h + pad - r*dil, ...); weight (k, c, r, s) with k the reduction
    f.hstep = -p.dh, f.wstep = -p.dw;
    f.a_c = p.yC, f.a_h = p.yH, f.a_w = p.yW;
    f.b_c = p.wK, f.b_i = p.wR, f.b_j = p.wS;
  } else if (p.mode == kDgradPhase) {  // tap (jr, js): r = r0 + jr*rstep, dy row dy_h0 - jr*dy_hstep
    f.h0 = p.dy_h0, f.hstep = -p.dy_hstep, f.w0 = p.dy_w0, f.wstep = -p.dy_wstep;
    f.a_c = p.yC, f.a_h = p.yH, f.a_w = p.yW;
    f.b0 = p.r0 * p.wR + p.s0 * p.wS, f.b_c = p.wK, f.b_i = p.rstep * p.wR, f.b_j = p.sstep * p.wS;
  }
  p.ka = f;
}

int out_run_of(const IgemmParams& p) {
  // forward: rows are y's pixels (n, p, q), columns its channels; backward-input: dx's pixels and channels, a
  // phase's pixels stride_w apart; backward-weight: (c, r, s) runs R*S apart (left to per-element stores)
  if (p.mode == kFwd) return p.yC == 1 ? 2 : p.yW == 1 ? 1 : 0;
  if (p.mode == kDgrad) return p.xC == 1 ? 2 : p.xW == 1 ? 1 : 0;
  if (p.mode == kDgradPhase) return p.xC == 1 ? 2 : 0;
  return 0;
}

bool vec_offsets_fit(const IgemmParams& p) {
  const KAffine& f = p.ka;
  const int64_t ch = p.div_ch.d, taps_j = p.div_s.d;
  const int64_t taps_i = ch * taps_j > 0 ? (p.Kred + ch * taps_j - 1) / (ch * taps_j) : 0;
  const int64_t i1 = std::max<int64_t>(0, taps_i - 1), j1 = taps_j - 1;
  auto most = [](int64_t a, int64_t b) { return std::max(std::llabs(a), std::llabs(b)); };
  const int64_t h = most(f.h0, f.h0 + i1 * f.hstep), w = most(f.w0, f.w0 + j1 * f.wstep);
  const int64_t a = ch * std::llabs(f.a_c) + h * std::llabs(f.a_h) + w * std::llabs(f.a_w);
  const int64_t b = std::llabs(f.b0) + ch * std::llabs(f.b_c) + i1 * std::llabs(f.b_i) + j1 * std::llabs(f.b_j);
  return a < INT_MAX / 2 && b < INT_MAX / 2;
}

IgemmParams make_dgrad_phase(const ConvShape& s, ConvLayout layout, int a, int b) {
  IgemmParams p = make_igemm(kDgrad, s, layout);
  p.mode = kDgradPhase;
  p.phase_h = a, p.phase_w = b;
  const int64_t hi = a < s.H ? (s.H - a + s.stride_h - 1) / s.stride_h : 0;
  const int64_t wi = b < s.W ? (s.W - b + s.stride_w - 1) / s.stride_w : 0;
  // Taps reaching the phase: (phase + pad - r*dil) divisible by the stride; they repeat every stride/gcd(stride,
  // dil) taps.
  auto taps = [](int phase, int pad, int dil, int stride, int64_t extent, int& first, int& step) {
    first = -1;
    for (int r = 0; r < extent && r < stride; ++r)
      if (((phase + pad - int64_t(r) * dil) % stride + stride) % stride == 0) {
        first = r;
        break;
      }
    int g = stride, d = dil;
    while (d) {
      const int t = g % d;
      g = d, d = t;
    }
    step = stride / g;
    return first < 0 ? int64_t(0) : (extent - 1 - first) / step + 1;
  };
  const int64_t ra = taps(a, s.pad_h, s.dil_h, s.stride_h, s.R, p.r0, p.rstep);
  const int64_t sb = taps(b, s.pad_w, s.dil_w, s.stride_w, s.S, p.s0, p.sstep);
  p.M = int(s.N * hi * wi);
  p.Kred = int(p.Kg * ra * sb);
  // dy row of tap jr: (a + pad - (r0 + jr*rstep)*dil) / stride, exact (rstep*dil is a multiple of the stride).
  if (ra > 0) p.dy_h0 = (a + s.pad_h - p.r0 * s.dil_h) / s.stride_h, p.dy_hstep = p.rstep * s.dil_h / s.stride_h;
  if (sb > 0) p.dy_w0 = (b + s.pad_w - p.s0 * s.dil_w) / s.stride_w, p.dy_wstep = p.sstep * s.dil_w / s.stride_w;
  p.div_plane = FastDivmod(hi * wi), p.div_row = FastDivmod(wi);
  p.div_rs = FastDivmod(ra * sb), p.div_s = FastDivmod(sb);
  return p;
}

DirectParams make_direct(const ConvShape& s, ConvLayout layout) {
  conv::DirectParams p;
  p.nhwc = layout == ConvLayout::kNHWC;
  p.N = int(s.N), p.C = int(s.C), p.H = int(s.H), p.W = int(s.W), p.K = int(s.K), p.R = int(s.R), p.S = int(s.S);
  p.P = int(s.P), p.Q = int(s.Q), p.mult = int(s.K / std::max<int64_t>(1, s.C));
  p.sh = s.stride_h, p.sw = s.stride_w, p.ph = s.pad_h, p.pw = s.pad_w, p.dh = s.dil_h, p.dw = s.dil_w;
  strides(s, layout, s.C, s.H, s.W, p.xN, p.xC, p.xH, p.xW);
  strides(s, layout, s.K, s.P, s.Q, p.yN, p.yC, p.yH, p.yW);
  return p;
}

}  // namespace conv

bool conv_supported(const ConvShape& s, const char** why) {
  auto fail = [&](const char* m) {
    if (why) *why = m;
    return false;
  };
  if (s.N < 1 || s.C < 1 || s.H < 1 || s.W < 1 || s.K < 1 || s.R < 1 || s.S < 1 || s.P < 1 || s.Q < 1)
    return fail("sizes must be positive");
  if (s.groups < 1 || s.C % s.groups != 0 || s.K % s.groups != 0) return fail("groups must divide C and K");
  if (s.stride_h < 1 || s.stride_w < 1 || s.dil_h < 1 || s.dil_w < 1 || s.pad_h < 0 || s.pad_w < 0)
    return fail("stride and dilation must be positive and padding non-negative");
  if (s.H + 2 * int64_t(s.pad_h) >= kMaxCoord || s.W + 2 * int64_t(s.pad_w) >= kMaxCoord ||
      int64_t(s.dil_h) * (s.R - 1) >= kMaxCoord || int64_t(s.dil_w) * (s.S - 1) >= kMaxCoord ||
      s.P * s.stride_h >= kMaxCoord || s.Q * s.stride_w >= kMaxCoord)
    return fail("spatial sizes must stay below 2^29");
  const int64_t cg = s.C / s.groups, kg = s.K / s.groups;
  if (s.N * s.P * s.Q > kMax32 || s.N * s.H * s.W > kMax32) return fail("N*H*W and N*P*Q must stay below 2^31");
  if (s.C * s.H * s.W > kMax32 || s.K * s.P * s.Q > kMax32)
    return fail("one image (C*H*W, K*P*Q elements) must stay below 2^31");
  if (cg * s.R * s.S > kMax32 / 2 || kg * s.R * s.S > kMax32 / 2 || s.K * s.R * s.S > kMax32 / 2)
    return fail("the weight (K*R*S, C/groups*R*S) must stay below 2^30 elements");
  return true;
}

size_t conv2d_workspace_bytes(ConvPass pass, DType dt, const ConvShape& s, ConvLayout layout, bool allow_tf32) {
  if (!conv_supported(s)) return 0;
  const size_t acc = conv::acc_bytes(dt);
  switch (pass) {
    case ConvPass::kForward:
      if (conv::fewchan_takes(dt, allow_tf32, s, conv::make_direct(s, layout))) return 0;
      [[fallthrough]];
    case ConvPass::kBackwardInput:
      return split_bytes(dt, window_plan(pass, s), pass_outputs(pass, s)) +
             vec_workspace(pass, dt, s, layout, allow_tf32);
    case ConvPass::kBackwardWeight: {
      if (is_depthwise(s)) {
        const int64_t outputs = s.K * s.R * s.S;
        return size_t(conv::direct_reduce_splits(s.N * s.P * s.Q, outputs)) * outputs * acc;
      }
      return split_bytes(dt, wgrad_plan(s), pass_outputs(pass, s)) + vec_wgrad_bytes(dt, s, layout, allow_tf32);
    }
    case ConvPass::kBackwardBias:
      return size_t(conv::direct_reduce_splits(s.N * s.P * s.Q, s.K)) * size_t(s.K) * acc;
  }
  return 0;
}

cudaError_t conv2d_forward(DType dt, const ConvShape& s, ConvLayout layout, const void* x, const void* w,
                           const void* bias, void* y, bool allow_tf32, void* workspace, size_t workspace_bytes,
                           cudaStream_t stream) {
  if (!conv_supported(s) || !x || !w || !y) return cudaErrorInvalidValue;
  const conv::DirectParams dp = conv::make_direct(s, layout);
  if (conv::fewchan_takes(dt, allow_tf32, s, dp)) return conv::fewchan_forward(dt, allow_tf32, dp, x, w, bias, y, stream);
  if (is_depthwise(s)) return conv::depthwise_forward(dt, dp, x, w, bias, y, stream);
  const PassWorkspace ws = pass_workspace(window_plan(ConvPass::kForward, s), dt, pass_outputs(ConvPass::kForward, s),
                                          workspace, workspace_bytes);
  const size_t vec_need = vec_workspace(ConvPass::kForward, dt, s, layout, allow_tf32);
  const bool vec = vec_usable(vec_need, ws.rest, ws.rest_bytes, x, layout);
  IgemmParams p;
  if (vec) {
    // A = x in NHWC, B = the weight as KRSC (reduction order (r, s, c) in both); y written in the caller's layout.
    const int64_t cg = s.C / s.groups;
    cudaError_t err = conv::transpose_batched(dt, w, ws.rest, s.K, cg, s.R * s.S, stream);
    const void* xa = nullptr;
    if (err == cudaSuccess)
      err = vec_operand(dt, x, s.N, s.C, s.H, s.W, layout,
                        ws.rest + vec_weight_bytes(dt, s), xa, stream);
    if (err != cudaSuccess) return err;
    p = conv::make_igemm(conv::kFwd, s, ConvLayout::kNHWC);
    strides(s, layout, s.K, s.P, s.Q, p.yN, p.yC, p.yH, p.yW);
    p.A = xa, p.B = ws.rest;
    p.wK = cg * s.R * s.S, p.wR = s.S * cg, p.wS = cg, p.wC = 1;
  } else {
    p = conv::make_igemm(conv::kFwd, s, layout);
    p.A = x, p.B = w;
  }
  p.bias = bias, p.out = y;
  return run_pass(dt, allow_tf32, p, stream, vec, ws, s.K, layout == ConvLayout::kNCHW ? s.P * s.Q : 1);
}

cudaError_t conv2d_backward_input(DType dt, const ConvShape& s, ConvLayout layout, const void* dy, const void* w,
                                  const void* bias, void* dx, bool allow_tf32, void* workspace,
                                  size_t workspace_bytes, cudaStream_t stream) {
  if (!conv_supported(s) || !dy || !w || !dx) return cudaErrorInvalidValue;
  if (is_depthwise(s)) return conv::depthwise_backward_input(dt, conv::make_direct(s, layout), dy, w, bias, dx, stream);
  const PassWorkspace ws = pass_workspace(window_plan(ConvPass::kBackwardInput, s), dt,
                                          pass_outputs(ConvPass::kBackwardInput, s), workspace, workspace_bytes);
  const size_t vec_need = vec_workspace(ConvPass::kBackwardInput, dt, s, layout, allow_tf32);
  // The vector path: A = dy in NHWC, B = the weight as per-group CRSK (reduction order (r, s, k) in both); dx
  // written in the caller's layout.
  const bool vec = vec_usable(vec_need, ws.rest, ws.rest_bytes, dy, layout);
  const int64_t cg = s.C / s.groups, kg = s.K / s.groups;
  const void* dya = dy;
  if (vec) {
    cudaError_t err = conv::transpose_batched(dt, w, ws.rest, s.groups, kg, cg * s.R * s.S, stream);
    if (err == cudaSuccess)
      err = vec_operand(dt, dy, s.N, s.K, s.P, s.Q, layout,
                        ws.rest + vec_weight_bytes(dt, s), dya, stream);
    if (err != cudaSuccess) return err;
  }
  auto prepare = [&](IgemmParams p) {
    p.A = dya, p.B = w, p.bias = bias, p.out = dx;
    if (vec) {
      strides(s, layout, s.C, s.H, s.W, p.xN, p.xC, p.xH, p.xW);
      p.B = ws.rest, p.wK = 1, p.wS = kg, p.wR = s.S * kg, p.wC = s.R * s.S * kg, p.wG = cg * s.R * s.S * kg;
    }
    return p;
  };
  const ConvLayout gemm_layout = vec ? ConvLayout::kNHWC : layout;
  if (s.stride_h == 1 && s.stride_w == 1)
    return run_pass(dt, allow_tf32, prepare(conv::make_igemm(conv::kDgrad, s, gemm_layout)), stream, vec, ws, s.C,
                    layout == ConvLayout::kNCHW ? s.H * s.W : 1);
  for (int a = 0; a < s.stride_h; ++a)  // (window_plan does not split the phases)
    for (int b = 0; b < s.stride_w; ++b) {
      const IgemmParams p = conv::make_dgrad_phase(s, gemm_layout, a, b);
      if (p.M == 0) continue;
      const cudaError_t err = run_igemm(dt, allow_tf32, prepare(p), stream, vec);
      if (err != cudaSuccess) return err;
    }
  return cudaSuccess;
}

cudaError_t conv2d_backward_weight(DType dt, const ConvShape& s, ConvLayout layout, const void* dy, const void* x,
                                   void* dw, bool allow_tf32, void* workspace, size_t workspace_bytes,
                                   cudaStream_t stream) {
  if (!conv_supported(s) || !dy || !x || !dw) return cudaErrorInvalidValue;
  const size_t need = conv2d_workspace_bytes(ConvPass::kBackwardWeight, dt, s, layout, allow_tf32);
  if (!check_workspace(need, workspace, workspace_bytes)) return cudaErrorInvalidValue;
  if (is_depthwise(s)) {
    const int splits = conv::direct_reduce_splits(s.N * s.P * s.Q, s.K * s.R * s.S);
    return conv::depthwise_backward_weight(dt, conv::make_direct(s, layout), dy, x, dw, workspace, splits, stream);
  }
  const bool transposed = s.K / s.groups <= conv::kNarrowMaxCols;
  const PassWorkspace ws = pass_workspace(wgrad_plan(s), dt, pass_outputs(ConvPass::kBackwardWeight, s), workspace,
                                          workspace_bytes);
  // The vector path (16-bit or TF32; dy and x in NHWC, the NCHW ones transposed after the partial sums).
  const bool vec = vec_wgrad_eligible(dt, s, allow_tf32) && arch::compute_capability_major() >= 8 &&
                   (layout == ConvLayout::kNCHW || (reinterpret_cast<uintptr_t>(dy) % 16 == 0 &&
                                                    reinterpret_cast<uintptr_t>(x) % 16 == 0));
  const void* dya = dy;
  const void* xa = x;
  if (vec && layout == ConvLayout::kNCHW) {
    cudaError_t err = vec_operand(dt, dy, s.N, s.K, s.P, s.Q, layout, ws.rest, dya, stream);
    if (err == cudaSuccess)
      err = vec_operand(dt, x, s.N, s.C, s.H, s.W, layout,
                        ws.rest + vec_copy_bytes(dt, s.N, s.K, s.P, s.Q), xa, stream);
    if (err != cudaSuccess) return err;
  }
  IgemmParams p = conv::make_igemm(transposed ? conv::kWgradT : conv::kWgrad, s, vec ? ConvLayout::kNHWC : layout);
  p.A = transposed ? xa : dya, p.B = transposed ? dya : xa, p.out = dw;
  return run_pass(dt, allow_tf32, p, stream, vec, ws);
}

cudaError_t conv2d_backward_bias(DType dt, const ConvShape& s, ConvLayout layout, const void* dy, void* db,
                                 void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!conv_supported(s) || !dy || !db) return cudaErrorInvalidValue;
  const size_t need = conv2d_workspace_bytes(ConvPass::kBackwardBias, dt, s, layout);
  if (!check_workspace(need, workspace, workspace_bytes)) return cudaErrorInvalidValue;
  const int splits = conv::direct_reduce_splits(s.N * s.P * s.Q, s.K);
  return conv::bias_backward(dt, conv::make_direct(s, layout), dy, db, workspace, splits, stream);
}

}  // namespace deepops
