// C++ test of the convolution launchers (csrc/kernels/conv.h) against a naive host reference.
//
// 1. Without a GPU (always run): the multiply-shift division of every divisor kind the kernels use, that each
//    tile's load mapping covers the tile exactly once, the depthwise kernels' per-element arithmetic, and the
//    implicit-GEMM formulation itself: the row / column / reduction entries and the gathers of conv_igemm.cuh,
//    evaluated on the host as a plain triple loop in float64 (forward, backward-input with stride 1,
//    backward-weight plain and transposed, the vector paths' weight layouts, the phase decomposition of the
//    strided backward-input; NCHW and NHWC; groups), compared with a scatter-form reference; entries past the GEMM's
//    edges must gather zeros.
// 2. With a GPU: every launcher (forward with bias, backward-input with and without bias, backward-weight, bias
//    gradient) in float64, float32 (FFMA and TF32), float16 and bfloat16, NCHW and NHWC, on small random shapes
//    that take every path: generic 3x3, strided, dilated, grouped, depthwise (multiplier 1 and 2), the
//    single-channel and 3-channel first layers, 1x1, non-square, a backward-weight with split-K, and GEMMs of
//    more and of at most 64 columns (the wide and the narrow tensor-core tiles); in NHWC with C/groups % 8 == 0
//    the 16-bit forward takes the cp.async vector path, and with stride 1, groups 1, K % 8 == 0 the 16-bit
//    backward-input too; forward with C <= 4 and groups 1 in float16 / bfloat16 / TF32 takes the few-channel
//    kernel (conv_fewchan.cu: several column tiles, channel blocks, strides, dilation; both channel-slot widths).
//    The error bound is tol(dtype) * sum |terms| per output element.
// Exit status: 0 pass, 1 failure, 77 (skipped) when the host part passes and there is no GPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"  // first: the CUDA headers come through kernels/arch/config.h
#include "kernels/conv.h"
#include "kernels/shapes.h"
#include "kernels/conv_direct.cuh"
#include "kernels/conv_igemm.cuh"
#include "kernels/conv_igemm_vec.cuh"

using namespace deepops;


// ------------------------------------------------------------------------------------------------ reference
struct Tensors {
  std::vector<double> x, w, y, bias_k, bias_c;  // inputs of the problem (rounded to the dtype)
};

static int64_t xi(const ConvShape& s, ConvLayout l, int64_t n, int64_t c, int64_t h, int64_t w) {
  return l == ConvLayout::kNHWC ? ((n * s.H + h) * s.W + w) * s.C + c : ((n * s.C + c) * s.H + h) * s.W + w;
}
static int64_t yi(const ConvShape& s, ConvLayout l, int64_t n, int64_t k, int64_t p, int64_t q) {
  return l == ConvLayout::kNHWC ? ((n * s.P + p) * s.Q + q) * s.K + k : ((n * s.K + k) * s.P + p) * s.Q + q;
}
static int64_t wi(const ConvShape& s, int64_t k, int64_t c, int64_t r, int64_t q) {
  return ((k * (s.C / s.groups) + c) * s.R + r) * s.S + q;
}

// Scatter form over every (n, k, p, q, c, r, s) term: out = value, mag = sum of |term| (for the error bound).
struct Ref {
  std::vector<double> y, ymag, dx, dxmag, dw, dwmag, db, dbmag;
};
static Ref reference(const ConvShape& s, ConvLayout l, const Tensors& t, bool fwd_bias, bool dgrad_bias) {
  Ref r;
  const int64_t cg = s.C / s.groups, kg = s.K / s.groups;
  const size_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.K * s.P * s.Q, nw = s.K * cg * s.R * s.S;
  r.y.assign(ny, 0), r.ymag.assign(ny, 0), r.dx.assign(nx, 0), r.dxmag.assign(nx, 0);
  r.dw.assign(nw, 0), r.dwmag.assign(nw, 0), r.db.assign(s.K, 0), r.dbmag.assign(s.K, 0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t k = 0; k < s.K; ++k)
      for (int64_t p = 0; p < s.P; ++p)
        for (int64_t q = 0; q < s.Q; ++q) {
          const int64_t g = k / kg, yo = yi(s, l, n, k, p, q);
          const double dy = t.y[yo];
          r.db[k] += dy, r.dbmag[k] += std::fabs(dy);
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t rr = 0; rr < s.R; ++rr)
              for (int64_t ss = 0; ss < s.S; ++ss) {
                const int64_t h = p * s.stride_h - s.pad_h + rr * s.dil_h, w = q * s.stride_w - s.pad_w + ss * s.dil_w;
                if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
                const int64_t xo = xi(s, l, n, g * cg + c, h, w), wo = wi(s, k, c, rr, ss);
                r.y[yo] += t.x[xo] * t.w[wo], r.ymag[yo] += std::fabs(t.x[xo] * t.w[wo]);
                r.dx[xo] += dy * t.w[wo], r.dxmag[xo] += std::fabs(dy * t.w[wo]);
                r.dw[wo] += dy * t.x[xo], r.dwmag[wo] += std::fabs(dy * t.x[xo]);
              }
        }
  if (fwd_bias)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t k = 0; k < s.K; ++k)
        for (int64_t p = 0; p < s.P; ++p)
          for (int64_t q = 0; q < s.Q; ++q) {
            const int64_t o = yi(s, l, n, k, p, q);
            r.y[o] += t.bias_k[k], r.ymag[o] += std::fabs(t.bias_k[k]);
          }
  if (dgrad_bias)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t h = 0; h < s.H; ++h)
          for (int64_t w = 0; w < s.W; ++w) {
            const int64_t o = xi(s, l, n, c, h, w);
            r.dx[o] += t.bias_c[c], r.dxmag[o] += std::fabs(t.bias_c[c]);
          }
  return r;
}

static ConvShape make(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S, int sh, int sw,
                      int ph, int pw, int dh, int dw, int groups) {
  ConvShape s;
  s.N = N, s.C = C, s.H = H, s.W = W, s.K = K, s.R = R, s.S = S;
  s.stride_h = sh, s.stride_w = sw, s.pad_h = ph, s.pad_w = pw, s.dil_h = dh, s.dil_w = dw, s.groups = groups;
  s.P = conv_out_extent(H, R, sh, ph, dh);
  s.Q = conv_out_extent(W, S, sw, pw, dw);
  return s;
}

struct Case {
  const char* name;
  ConvShape s;
};

static std::vector<Case> cases() {
  return {
      {"3x3 s1 p1", make(2, 8, 9, 11, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1)},
      {"3x3 s2 p1", make(2, 16, 13, 10, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1)},
      {"5x3 s(2,3) p(2,0) d(1,2)", make(1, 6, 17, 19, 5, 5, 3, 2, 3, 2, 0, 1, 2, 1)},
      {"dilation 2", make(2, 4, 12, 12, 8, 3, 3, 1, 1, 2, 2, 2, 2, 1)},
      {"stride 2 dilation 2 (tapless phases)", make(1, 8, 11, 12, 16, 3, 3, 2, 2, 2, 1, 2, 2, 1)},
      {"stride 3 x 2, 4x5 kernel", make(2, 8, 14, 13, 8, 4, 5, 3, 2, 1, 2, 1, 1, 1)},
      {"groups 2", make(2, 8, 8, 8, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2)},
      {"groups 4 s2", make(1, 16, 10, 10, 8, 3, 3, 2, 2, 1, 1, 1, 1, 4)},
      {"groups 2, 8 channels per group", make(2, 16, 9, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1, 2)},
      {"depthwise 3x3", make(2, 12, 10, 9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 12)},
      {"depthwise mult 2 s2", make(2, 6, 11, 11, 12, 5, 5, 2, 2, 2, 2, 1, 1, 6)},
      {"C=1 first layer", make(2, 1, 20, 18, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1)},
      {"C=3 7x7 s2 p3", make(2, 3, 32, 30, 16, 7, 7, 2, 2, 3, 3, 1, 1, 1)},
      {"C=3 11x11 s4 p2", make(1, 3, 45, 45, 20, 11, 11, 4, 4, 2, 2, 1, 1, 1)},
      {"C=2 3x3 d2, two column tiles", make(1, 2, 9, 70, 10, 3, 3, 1, 1, 2, 2, 2, 2, 1)},
      {"C=4 3x2 s(1,3), two channel blocks", make(1, 4, 6, 140, 72, 3, 2, 1, 3, 1, 0, 1, 1, 1)},
      {"C=3 5x5 s3 d2, five output rows", make(2, 3, 23, 17, 12, 5, 5, 3, 3, 2, 2, 2, 1, 1)},
      {"1x1", make(2, 40, 7, 9, 36, 1, 1, 1, 1, 0, 0, 1, 1, 1)},
      {"1x1 s2", make(2, 20, 9, 9, 18, 1, 1, 2, 2, 0, 0, 1, 1, 1)},
      {"1x1, K > 64, C*R*S <= 64", make(2, 8, 6, 5, 72, 1, 1, 1, 1, 0, 0, 1, 1, 1)},
      {"non-square 1x7", make(1, 5, 6, 20, 7, 1, 7, 1, 1, 0, 3, 1, 1, 1)},
      {"multi-tile + split-K", make(4, 72, 16, 16, 136, 3, 3, 1, 1, 1, 1, 1, 1, 1)},
      {"large reduction", make(1, 160, 6, 6, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1)},
  };
}

// ------------------------------------------------------------------------------------------------ host checks
static int check_fastdivmod() {
  std::mt19937 rng(1);
  int bad = 0;
  std::vector<int64_t> divisors = {1, 2, 3, 5, 7, 9, 12, 25, 49, 64, 121, 147, 1000, 12544, 50176, 65535, 1 << 20};
  for (int i = 0; i < 30; ++i) divisors.push_back(1 + rng() % 200000);
  for (int64_t d : divisors) {
    conv::FastDivmod f(d);
    for (int i = 0; i < 20000; ++i) {
      int n;
      if (i < 2000) n = i;
      else if (i < 2100) n = INT32_MAX - (i - 2000);
      else n = static_cast<int>(rng() & 0x7fffffff);
      int q, r;
      f.divmod(n, q, r);
      if (q != n / d || r != n % d) {
        if (bad++ < 5) std::printf("FastDivmod(%lld): %d -> %d, %d\n", (long long)d, n, q, r);
      }
    }
  }
  return bad;
}

// The GEMM formulation on the host, float64: out(row, col) = sum_kk A(row, kk) B(kk, col).
static int check_formulation(const Case& cs, ConvLayout l, const Tensors& t, const Ref& ref) {
  int bad = 0;
  const ConvShape& s = cs.s;
  // The weight as KRSC, with the strides the forward vector path gives the kernel (variant 3 below).
  const int64_t cg = s.C / s.groups;
  std::vector<double> w_krsc(t.w.size());
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t c = 0; c < cg; ++c)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t q = 0; q < s.S; ++q) w_krsc[((k * s.R + r) * s.S + q) * cg + c] = t.w[wi(s, k, c, r, q)];
  // And as CRSK (groups 1), with the strides of the backward-input vector path (variant 4).
  std::vector<double> w_crsk(t.w.size());
  if (s.groups == 1)
    for (int64_t k = 0; k < s.K; ++k)
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t q = 0; q < s.S; ++q) w_crsk[((c * s.R + r) * s.S + q) * s.K + k] = t.w[wi(s, k, c, r, q)];
  for (int variant : {0, 1, 2, 3, 4, 5}) {  // 0-2: the three passes, 3-4: vector-path weights, 5: kWgradT
    if (variant == 4 && s.groups != 1) continue;
    const bool strided = s.stride_h > 1 || s.stride_w > 1;
    if ((variant == 1 || variant == 4) && strided) continue;  // the launcher runs phases: check_dgrad_phases
    const int mode = variant == 3 ? conv::kFwd : variant == 4 ? conv::kDgrad : variant == 5 ? conv::kWgradT : variant;
    conv::IgemmParams p = conv::make_igemm(mode, s, l);
    if (variant == 3) p.wK = cg * s.R * s.S, p.wR = s.S * cg, p.wS = cg, p.wC = 1;
    if (variant == 4) p.wK = 1, p.wC = s.R * s.S * s.K, p.wR = s.S * s.K, p.wS = s.K;
    const std::vector<double>& A = (mode == conv::kFwd || mode == conv::kWgradT) ? t.x : t.y;
    const std::vector<double>& B = variant == 3   ? w_krsc
                                   : variant == 4 ? w_crsk
                                   : mode == conv::kWgrad ? t.x
                                   : mode == conv::kWgradT ? t.y
                                                           : t.w;
    const std::vector<double>& want = mode == conv::kFwd ? ref.y : mode == conv::kDgrad ? ref.dx : ref.dw;
    const std::vector<double>& mag = mode == conv::kFwd ? ref.ymag : mode == conv::kDgrad ? ref.dxmag : ref.dwmag;
    std::vector<double> out(want.size(), std::nan(""));
    conv::set_k_affine(p);
    std::vector<conv::Entry> ka(p.Kred + 40), kb(p.Kred + 40);
    for (int kk = 0; kk < p.Kred + 40; ++kk)
      conv::build_k(p, kk, ka[kk], kb[kk]);
    auto gather_a = [&](const conv::Entry& r, const conv::Entry& k) {
      return conv::gather_window<double>(A.data(), r, k, p.a_lim_h, p.a_lim_w);
    };
    for (int g = 0; g < s.groups; ++g) {
      for (int m = 0; m < p.M + 3; ++m) {
        conv::Entry re;
        long long ro;
        conv::build_row(p, g, m, re, ro);
        for (int j = 0; j < p.Ncol + 3; ++j) {
          conv::Entry ce;
          long long co;
          conv::build_col(p, g, j, ce, co);
          double acc = 0;
          bool edge_nonzero = false;
          for (int kk = 0; kk < p.Kred + 40; ++kk) {
            const double a = gather_a(re, ka[kk]);
            const double b = conv::gather_window<double>(B.data(), ce, kb[kk], p.b_lim_h, p.b_lim_w);
            if (kk >= p.Kred && (a != 0 || b != 0)) edge_nonzero = true;
            if (m >= p.M && a != 0) edge_nonzero = true;
            if (j >= p.Ncol && b != 0) edge_nonzero = true;
            acc += a * b;
          }
          if (edge_nonzero && bad++ < 5)
            std::printf("formulation %s mode %d: an entry past the GEMM edge gathered a non-zero\n", cs.name, mode);
          if (m < p.M && j < p.Ncol) {
            if (ro + co < 0 || ro + co >= static_cast<long long>(out.size())) {
              if (bad++ < 5) std::printf("formulation %s mode %d: output offset %lld out of range\n", cs.name, mode, ro + co);
              continue;
            }
            out[ro + co] = acc;
          }
        }
      }
    }
    for (size_t i = 0; i < out.size(); ++i) {
      if (!(std::fabs(out[i] - want[i]) <= 1e-12 * (mag[i] + 1))) {
        if (bad++ < 5)
          std::printf("formulation %s %s mode %d: element %zu = %g, want %g\n", cs.name,
                      l == ConvLayout::kNHWC ? "NHWC" : "NCHW", mode, i, out[i], want[i]);
      }
    }
  }
  return bad;
}

// Backward-input as the launcher runs it for stride > 1: one GEMM per output phase (kDgradPhase), float64 on the
// host, with the plain and (groups 1) the CRSK weight of the vector path.  Every dx element must be written by
// exactly one phase.
static int check_dgrad_phases(const Case& cs, ConvLayout l, const Tensors& t, const Ref& ref) {
  const ConvShape& s = cs.s;
  if (s.stride_h == 1 && s.stride_w == 1) return 0;
  int bad = 0;
  std::vector<double> w_crsk(t.w.size());
  if (s.groups == 1)
    for (int64_t k = 0; k < s.K; ++k)
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t q = 0; q < s.S; ++q) w_crsk[((c * s.R + r) * s.S + q) * s.K + k] = t.w[wi(s, k, c, r, q)];
  for (bool crsk : {false, true}) {
    if (crsk && s.groups != 1) continue;
    std::vector<double> dx(ref.dx.size(), std::nan(""));
    std::vector<int> writes(ref.dx.size(), 0);
    for (int a = 0; a < s.stride_h; ++a)
      for (int b = 0; b < s.stride_w; ++b) {
        conv::IgemmParams p = conv::make_dgrad_phase(s, l, a, b);
        if (p.M == 0) continue;
        if (crsk) p.wK = 1, p.wC = s.R * s.S * s.K, p.wR = s.S * s.K, p.wS = s.K;
        const std::vector<double>& B = crsk ? w_crsk : t.w;
        conv::set_k_affine(p);
        std::vector<conv::Entry> ka(p.Kred + 40), kb(p.Kred + 40);
        for (int kk = 0; kk < p.Kred + 40; ++kk) conv::build_k(p, kk, ka[kk], kb[kk]);
        for (int g = 0; g < s.groups; ++g)
          for (int m = 0; m < p.M + 2; ++m) {
            conv::Entry re;
            long long ro;
            conv::build_row(p, g, m, re, ro);
            for (int j = 0; j < p.Ncol + 2; ++j) {
              conv::Entry ce;
              long long co;
              conv::build_col(p, g, j, ce, co);
              double acc = 0;
              for (int kk = 0; kk < p.Kred + 40; ++kk) {
                const double av = conv::gather_window<double>(t.y.data(), re, ka[kk], p.a_lim_h, p.a_lim_w);
                const double bv = conv::gather_window<double>(B.data(), ce, kb[kk], p.b_lim_h, p.b_lim_w);
                if ((kk >= p.Kred || m >= p.M) && av != 0) ++bad;
                if ((kk >= p.Kred || j >= p.Ncol) && bv != 0) ++bad;
                acc += av * bv;
              }
              if (m < p.M && j < p.Ncol) {
                if (ro + co < 0 || ro + co >= static_cast<long long>(dx.size())) {
                  ++bad;
                  continue;
                }
                dx[ro + co] = acc;
                ++writes[ro + co];
              }
            }
          }
      }
    for (size_t i = 0; i < dx.size(); ++i)
      if (writes[i] != 1 || !(std::fabs(dx[i] - ref.dx[i]) <= 1e-12 * (ref.dxmag[i] + 1))) {
        if (bad++ < 5)
          std::printf("dgrad phases %s %s%s: element %zu = %g (written %d times), want %g\n", cs.name,
                      l == ConvLayout::kNHWC ? "NHWC" : "NCHW", crsk ? " CRSK" : "", i, dx[i], writes[i], ref.dx[i]);
      }
  }
  return bad;
}

// Every (row, kk) of a BR x BK tile is loaded by exactly one (thread, element), in both load mappings.
template <int BR, int BK, int kThreads> static int check_tile_cover(const char* name) {
  int bad = 0;
  for (bool kfast : {false, true}) {
    std::vector<int> seen(BR * BK, 0);
    for (int tid = 0; tid < kThreads; ++tid)
      for (int e = 0; e < BR * BK / kThreads; ++e) {
        int row, kk;
        conv::tile_coord<BR, BK, kThreads>(kfast, tid, e, row, kk);
        if (row < 0 || row >= BR || kk < 0 || kk >= BK) ++bad;
        else ++seen[row * BK + kk];
      }
    for (int v : seen) bad += v != 1;
  }
  if (bad) std::printf("load mapping of %s does not cover its tile exactly once\n", name);
  return bad;
}

// The split-K plans take the shapes meant to exercise them: float64 has no vector path, so its forward /
// backward-input workspace is the partial sums alone (nonzero only when the pass is split).
static int check_split_plans(const std::vector<Case>& all) {
  int bad = 0;
  auto ws = [](ConvPass pass, const ConvShape& s) {
    return conv2d_workspace_bytes(pass, DType::kFloat64, s, ConvLayout::kNCHW);
  };
  for (const auto& cs : all) {
    const std::string name = cs.name;
    const bool fwd_split = ws(ConvPass::kForward, cs.s) > 0, dgrad_split = ws(ConvPass::kBackwardInput, cs.s) > 0;
    const bool want_fwd = name == "large reduction" || name == "multi-tile + split-K";
    const bool want_dgrad = name == "multi-tile + split-K";
    if (fwd_split != want_fwd || dgrad_split != want_dgrad) {
      std::printf("FAIL split plan of %s: forward %d (want %d), backward-input %d (want %d)\n", cs.name, fwd_split,
                  want_fwd, dgrad_split, want_dgrad);
      ++bad;
    }
  }
  return bad;
}

// The TF32 backward-weight fragments of conv_igemm_vec.cuh: its row and column slots are permutations of a warp's
// 64 rows and columns, and its fragment loads have no shared-memory bank conflict (8-byte loads served per
// half-warp, 4-byte per warp; pixel rows of BM or BN + kVecWgradTf32Pad floats; the pixel and warp offsets of an
// instruction are the same for all lanes, multiples of 32 words).
static int check_tf32_wgrad_layout() {
  using namespace conv;
  int bad = 0;
  std::vector<int> rows(64, 0), cols(64, 0);
  for (int g = 0; g < 8; ++g)
    for (int i = 0; i < 4; ++i) {
      for (int h = 0; h < 2; ++h) ++rows[vec_wgrad_tf32_row(g, i, h)];
      if (vec_wgrad_tf32_row(g, i, 1) != vec_wgrad_tf32_row(g, i, 0) + 1 || vec_wgrad_tf32_row(g, i, 0) % 2) ++bad;
    }
  for (int g = 0; g < 8; ++g)
    for (int j = 0; j < 8; ++j) ++cols[vec_wgrad_tf32_col(g, j)];
  for (int v = 0; v < 64; ++v) bad += (rows[v] != 1) + (cols[v] != 1);
  for (int pix : {128 + kVecWgradTf32Pad, 64 + kVecWgradTf32Pad}) {
    for (int i = 0; i < 4; ++i)
      for (int half = 0; half < 2; ++half) {
        std::vector<int> bank(32, 0);
        for (int lane = 16 * half; lane < 16 * half + 16; ++lane) {
          const int word = (lane % 4) * pix + vec_wgrad_tf32_row(lane / 4, i, 0);
          ++bank[word % 32], ++bank[(word + 1) % 32];
        }
        for (int b : bank) bad += b != 1;
      }
    for (int j = 0; j < 8; ++j) {
      std::vector<int> bank(32, 0);
      for (int lane = 0; lane < 32; ++lane) ++bank[((lane % 4) * pix + vec_wgrad_tf32_col(lane / 4, j)) % 32];
      for (int b : bank) bad += b != 1;
    }
  }
  if (bad) std::printf("FAIL the TF32 backward-weight fragment layout: %d faults\n", bad);
  return bad;
}

static int check_tile_covers() {
  using namespace conv;
  return check_tile_cover<TileSimtF32::BM, TileSimtF32::BK, TileSimtF32::kThreads>("SIMT f32 A") +
         check_tile_cover<TileSimtF32::BN, TileSimtF32::BK, TileSimtF32::kThreads>("SIMT f32 B") +
         check_tile_cover<TileSimtF64::BM, TileSimtF64::BK, TileSimtF64::kThreads>("SIMT f64 A") +
         check_tile_cover<TileSimtF64::BN, TileSimtF64::BK, TileSimtF64::kThreads>("SIMT f64 B") +
         check_tile_cover<TileMma16::BM, TileMma16::BK, TileMma16::kThreads>("MMA 16-bit A") +
         check_tile_cover<TileMma16::BN, TileMma16::BK, TileMma16::kThreads>("MMA 16-bit B") +
         check_tile_cover<TileMmaTf32::BM, TileMmaTf32::BK, TileMmaTf32::kThreads>("TF32 A") +
         check_tile_cover<TileMmaTf32::BN, TileMmaTf32::BK, TileMmaTf32::kThreads>("TF32 B") +
         check_tile_cover<TileMma16Narrow::BM, TileMma16Narrow::BK, TileMma16Narrow::kThreads>("MMA 16-bit narrow A") +
         check_tile_cover<TileMma16Narrow::BN, TileMma16Narrow::BK, TileMma16Narrow::kThreads>("MMA 16-bit narrow B") +
         check_tile_cover<TileMmaTf32Narrow::BM, TileMmaTf32Narrow::BK, TileMmaTf32Narrow::kThreads>("TF32 narrow A") +
         check_tile_cover<TileMmaTf32Narrow::BN, TileMmaTf32Narrow::BK, TileMmaTf32Narrow::kThreads>("TF32 narrow B");
}

// The depthwise kernels' per-element arithmetic on the host (float64), with the launchers' argument set-up.
static int check_depthwise(const Case& cs, ConvLayout l, const Tensors& t, const Ref& ref) {
  const ConvShape& s = cs.s;
  if (s.C / s.groups != 1) return 0;
  int bad = 0;
  const conv::DirectParams p = conv::make_direct(s, l);
  auto cmp = [&](const char* what, const std::vector<double>& got, const std::vector<double>& want,
                 const std::vector<double>& mag) {
    for (size_t i = 0; i < want.size(); ++i)
      if (!(std::fabs(got[i] - want[i]) <= 1e-12 * (mag[i] + 1)) && bad++ < 5)
        std::printf("depthwise %s %s %s: element %zu = %g, want %g\n", what, cs.name,
                    l == ConvLayout::kNHWC ? "NHWC" : "NCHW", i, got[i], want[i]);
  };
  {
    const conv::DirectArgs a = conv::direct_fwd_args(p);
    std::vector<double> y(ref.y.size(), std::nan(""));
    for (int n = 0; n < p.N; ++n)
      for (int idx = 0; idx < a.per_image; ++idx) {
        long long off;
        const double v = conv::dw_fwd_element<double>(a, t.x.data(), t.w.data(), nullptr, n, idx, off);
        if (off >= 0 && off < static_cast<long long>(y.size())) y[off] = v;
      }
    cmp("forward", y, ref.y, ref.ymag);
  }
  {
    const conv::DirectArgs a = conv::direct_dgrad_args(p);
    std::vector<double> dx(ref.dx.size(), std::nan(""));
    for (int n = 0; n < p.N; ++n)
      for (int idx = 0; idx < a.per_image; ++idx) {
        long long off;
        const double v = conv::dw_dgrad_element<double>(a, t.y.data(), t.w.data(), nullptr, n, idx, off);
        if (off >= 0 && off < static_cast<long long>(dx.size())) dx[off] = v;
      }
    cmp("backward_input", dx, ref.dx, ref.dxmag);
  }
  {
    const conv::DirectArgs a = conv::direct_args(p);
    std::vector<double> dw(ref.dw.size(), 0);
    for (int e = 0; e < static_cast<int>(dw.size()); ++e)
      for (int i = 0; i < p.N * p.P * p.Q; ++i) dw[e] += conv::dw_wgrad_term<double, double>(a, t.y.data(), t.x.data(), e, i);
    cmp("backward_weight", dw, ref.dw, ref.dwmag);
  }
  return bad;
}

// ------------------------------------------------------------------------------------------------ GPU checks
static double round_to(DType dt, double v) {
  switch (dt) {
    case DType::kFloat16: return __half2float(__float2half_rn(static_cast<float>(v)));
    case DType::kBFloat16: return __bfloat162float(__float2bfloat16_rn(static_cast<float>(v)));
    case DType::kFloat32: return static_cast<float>(v);
    case DType::kFloat64: return v;
  }
  return v;
}

static size_t esize(DType dt) { return dt == DType::kFloat64 ? 8 : dt == DType::kFloat32 ? 4 : 2; }

static std::vector<unsigned char> encode(DType dt, const std::vector<double>& v) {
  std::vector<unsigned char> b(v.size() * esize(dt));
  for (size_t i = 0; i < v.size(); ++i) {
    switch (dt) {
      case DType::kFloat16: { __half h = __float2half_rn(static_cast<float>(v[i])); std::memcpy(&b[2 * i], &h, 2); break; }
      case DType::kBFloat16: { __nv_bfloat16 h = __float2bfloat16_rn(static_cast<float>(v[i])); std::memcpy(&b[2 * i], &h, 2); break; }
      case DType::kFloat32: { float f = static_cast<float>(v[i]); std::memcpy(&b[4 * i], &f, 4); break; }
      case DType::kFloat64: std::memcpy(&b[8 * i], &v[i], 8); break;
    }
  }
  return b;
}

static std::vector<double> decode(DType dt, const std::vector<unsigned char>& b) {
  std::vector<double> v(b.size() / esize(dt));
  for (size_t i = 0; i < v.size(); ++i) {
    switch (dt) {
      case DType::kFloat16: { __half h; std::memcpy(&h, &b[2 * i], 2); v[i] = __half2float(h); break; }
      case DType::kBFloat16: { __nv_bfloat16 h; std::memcpy(&h, &b[2 * i], 2); v[i] = __bfloat162float(h); break; }
      case DType::kFloat32: { float f; std::memcpy(&f, &b[4 * i], 4); v[i] = f; break; }
      case DType::kFloat64: std::memcpy(&v[i], &b[8 * i], 8); break;
    }
  }
  return v;
}

static double tolerance(DType dt, bool tf32) {
  switch (dt) {
    case DType::kFloat16: return 2e-3;
    case DType::kBFloat16: return 1e-2;
    case DType::kFloat32: return tf32 ? 4e-3 : 2e-5;
    case DType::kFloat64: return 1e-11;
  }
  return 0;
}

struct DevBuf {
  void* p = nullptr;
  ~DevBuf() { if (p) cudaFree(p); }
};

static cudaError_t upload(DevBuf& d, const std::vector<unsigned char>& b) {
  cudaError_t e = cudaMalloc(&d.p, b.size() ? b.size() : 1);
  if (e != cudaSuccess) return e;
  return cudaMemcpy(d.p, b.data(), b.size(), cudaMemcpyHostToDevice);
}

static int compare(const char* what, const std::string& tag, DType dt, bool tf32, const std::vector<double>& got,
                   const std::vector<double>& want, const std::vector<double>& mag) {
  const double tol = tolerance(dt, tf32);
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double bound = tol * mag[i] + 1e-6 * (dt == DType::kFloat64 ? 1e-6 : 1.0);
    if (!(std::fabs(got[i] - want[i]) <= bound)) {
      if (bad < 3)
        std::printf("FAIL %s %s: element %zu = %.9g, want %.9g (bound %.3g)\n", what, tag.c_str(), i, got[i], want[i],
                    bound);
      ++bad;
    }
  }
  return bad;
}

static int run_gpu_case(const Case& cs, ConvLayout l, DType dt, bool tf32, const Tensors& t64, int& failures) {
  const ConvShape& s = cs.s;
  const std::string tag = std::string(cs.name) + (l == ConvLayout::kNHWC ? " NHWC " : " NCHW ") + dtype_name(dt) +
                          (tf32 ? " tf32" : "");
  Tensors t;  // inputs rounded to the dtype: the reference sees exactly what the kernel sees
  auto rnd = [&](const std::vector<double>& v) {
    std::vector<double> o(v.size());
    for (size_t i = 0; i < v.size(); ++i) o[i] = round_to(dt, v[i]);
    return o;
  };
  t.x = rnd(t64.x), t.w = rnd(t64.w), t.y = rnd(t64.y), t.bias_k = rnd(t64.bias_k), t.bias_c = rnd(t64.bias_c);
  const Ref ref = reference(s, l, t, true, true);
  const Ref ref_nb = reference(s, l, t, false, false);
  DevBuf x, w, y, bk, bc, out, ws;
  CHECK(upload(x, encode(dt, t.x)));
  CHECK(upload(w, encode(dt, t.w)));
  CHECK(upload(y, encode(dt, t.y)));
  CHECK(upload(bk, encode(dt, t.bias_k)));
  CHECK(upload(bc, encode(dt, t.bias_c)));
  size_t wsb = 0;
  for (ConvPass pass : {ConvPass::kForward, ConvPass::kBackwardInput, ConvPass::kBackwardWeight, ConvPass::kBackwardBias})
    wsb = std::max(wsb, conv2d_workspace_bytes(pass, dt, s, l, tf32));
  if (wsb) CHECK(cudaMalloc(&ws.p, wsb));
  const size_t most = std::max({ref.y.size(), ref.dx.size(), ref.dw.size(), ref.db.size()}) * esize(dt);
  CHECK(cudaMalloc(&out.p, most));
  auto fetch = [&](size_t n, std::vector<double>& v) -> cudaError_t {
    std::vector<unsigned char> b(n * esize(dt));
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) return e;
    e = cudaMemcpy(b.data(), out.p, b.size(), cudaMemcpyDeviceToHost);
    v = decode(dt, b);
    return e;
  };
  std::vector<double> got;
  int bad = 0;
  CHECK(cudaMemset(out.p, 0xff, most));  // NaN pattern: an element left unwritten fails
  CHECK(conv2d_forward(dt, s, l, x.p, w.p, bk.p, out.p, tf32, ws.p, wsb, nullptr));
  CHECK(fetch(ref.y.size(), got));
  bad += compare("forward+bias", tag, dt, tf32, got, ref.y, ref.ymag);
  CHECK(cudaMemset(out.p, 0xff, most));
  CHECK(conv2d_backward_input(dt, s, l, y.p, w.p, nullptr, out.p, tf32, ws.p, wsb, nullptr));
  CHECK(fetch(ref_nb.dx.size(), got));
  bad += compare("backward_input", tag, dt, tf32, got, ref_nb.dx, ref_nb.dxmag);
  CHECK(cudaMemset(out.p, 0xff, most));
  CHECK(conv2d_backward_input(dt, s, l, y.p, w.p, bc.p, out.p, tf32, ws.p, wsb, nullptr));
  CHECK(fetch(ref.dx.size(), got));
  bad += compare("backward_input+bias", tag, dt, tf32, got, ref.dx, ref.dxmag);
  // without a workspace the forward and backward-input take the element gather, where the vector path ran above
  CHECK(cudaMemset(out.p, 0xff, most));
  CHECK(conv2d_forward(dt, s, l, x.p, w.p, bk.p, out.p, tf32, nullptr, 0, nullptr));
  CHECK(fetch(ref.y.size(), got));
  bad += compare("forward+bias (gather)", tag, dt, tf32, got, ref.y, ref.ymag);
  CHECK(cudaMemset(out.p, 0xff, most));
  CHECK(conv2d_backward_input(dt, s, l, y.p, w.p, bc.p, out.p, tf32, nullptr, 0, nullptr));
  CHECK(fetch(ref.dx.size(), got));
  bad += compare("backward_input+bias (gather)", tag, dt, tf32, got, ref.dx, ref.dxmag);
  CHECK(cudaMemset(out.p, 0xff, most));
  CHECK(conv2d_backward_weight(dt, s, l, y.p, x.p, out.p, tf32, ws.p, wsb, nullptr));
  CHECK(fetch(ref.dw.size(), got));
  bad += compare("backward_weight", tag, dt, tf32, got, ref.dw, ref.dwmag);
  {  // determinism: a second run gives the same bits
    std::vector<double> again;
    CHECK(cudaMemset(out.p, 0xff, most));
    CHECK(conv2d_backward_weight(dt, s, l, y.p, x.p, out.p, tf32, ws.p, wsb, nullptr));
    CHECK(fetch(ref.dw.size(), again));
    if (std::memcmp(again.data(), got.data(), got.size() * sizeof(double)) != 0) {
      std::printf("FAIL backward_weight %s: not bitwise reproducible\n", tag.c_str());
      ++bad;
    }
  }
  CHECK(cudaMemset(out.p, 0xff, most));
  CHECK(conv2d_backward_bias(dt, s, l, y.p, out.p, ws.p, wsb, nullptr));
  CHECK(fetch(ref.db.size(), got));
  bad += compare("backward_bias", tag, dt, tf32, got, ref.db, ref.dbmag);
  if (bad) ++failures;
  return 0;
}

int main() {
  std::mt19937 rng(0);
  std::uniform_real_distribution<double> U(-1.0, 1.0);
  int host_bad = check_fastdivmod() + check_tile_covers() + check_tf32_wgrad_layout();
  const auto all = cases();
  host_bad += check_split_plans(all);
  std::vector<Tensors> data;
  for (const auto& cs : all) {
    const ConvShape& s = cs.s;
    Tensors t;
    t.x.resize(s.N * s.C * s.H * s.W), t.w.resize(s.K * (s.C / s.groups) * s.R * s.S);
    t.y.resize(s.N * s.K * s.P * s.Q), t.bias_k.resize(s.K), t.bias_c.resize(s.C);
    for (auto* v : {&t.x, &t.w, &t.y, &t.bias_k, &t.bias_c})
      for (auto& e : *v) e = U(rng);
    for (ConvLayout l : {ConvLayout::kNCHW, ConvLayout::kNHWC}) {
      if (!conv_supported(s)) {
        std::printf("case %s: not supported?\n", cs.name);
        ++host_bad;
        continue;
      }
      const Ref ref = reference(s, l, t, false, false);
      host_bad += check_formulation(cs, l, t, ref);
      host_bad += check_depthwise(cs, l, t, ref);
      if (s.C / s.groups != 1) host_bad += check_dgrad_phases(cs, l, t, ref);
    }
    data.push_back(std::move(t));
  }
  std::printf("host checks (division, GEMM formulation): %s\n", host_bad ? "FAILED" : "passed");

  if (!gpu_present()) {
    std::printf("no GPU: device checks skipped\n");
    return host_bad ? 1 : kSkipped;
  }
  int failures = 0, runs = 0;
  for (size_t i = 0; i < all.size(); ++i)
    for (ConvLayout l : {ConvLayout::kNCHW, ConvLayout::kNHWC})
      for (DType dt : {DType::kFloat64, DType::kFloat32, DType::kFloat16, DType::kBFloat16})
        for (bool tf32 : {false, true}) {
          if (tf32 && dt != DType::kFloat32) continue;
          if (run_gpu_case(all[i], l, dt, tf32, data[i], failures) != 0) return 1;
          ++runs;
        }
  std::printf("device checks: %d of %d configurations failed\n", failures, runs);
#if defined(DEEPOPS_EMULATE)
  // both paths of every tensor-core dtype ran: the vector kernels (cp.async, ldmatrix; backward-weight with
  // ldmatrix.trans in 16-bit, 8- and 4-byte shared loads in TF32) and the element gather; and the few-channel
  // kernels (2 and 4 channel slots)
  for (const char* want :
       {"conv_igemm_vec_kernel<__half, false, 0>", "conv_igemm_vec_kernel<__half, true, 0>",
        "conv_igemm_vec_kernel<__nv_bfloat16, false, 0>", "conv_igemm_vec_kernel<__nv_bfloat16, true, 0>",
        "conv_igemm_vec_kernel<float, false, 0>", "conv_igemm_vec_kernel<float, true, 0>",
        "conv_igemm_vec_kernel<__half, false, 1>", "conv_igemm_vec_kernel<__half, true, 1>",
        "conv_igemm_vec_kernel<__half, true, 2>", "conv_igemm_vec_kernel<__nv_bfloat16, false, 1>",
        "conv_igemm_vec_kernel<__nv_bfloat16, true, 1>", "conv_igemm_vec_kernel<__nv_bfloat16, true, 2>",
        "conv_igemm_vec_kernel<float, false, 1>", "conv_igemm_vec_kernel<float, true, 1>",
        "conv_igemm_vec_kernel<float, true, 2>",
        "conv_fewchan_kernel<__half, 2>", "conv_fewchan_kernel<__half, 4>", "conv_fewchan_kernel<__nv_bfloat16, 2>",
        "conv_fewchan_kernel<__nv_bfloat16, 4>", "conv_fewchan_kernel<float, 2>", "conv_fewchan_kernel<float, 4>"}) {
    long long n = 0;
    for (const auto& kc : emu::kernel_launch_counts())
      if (kc.first.find(want) != std::string::npos) n += kc.second;
    std::printf("  %-48s %lld launches\n", want, n);
    if (n == 0) ++failures;
  }
#endif
  return (failures || host_bad) ? 1 : 0;
}
