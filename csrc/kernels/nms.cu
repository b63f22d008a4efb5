// Non-maximum suppression (plain and batched) and pairwise box IoU on the GPU.
//
// Semantics: torchvision's, with the arithmetic of its CPU kernel operation for operation (every multiply, add and
// divide rounded on its own: the __f*_rn / __d*_rn intrinsics keep nvcc from fusing them into FMAs), in float32
// for the 16-bit types.  Rank = the stable descending sort of the scores (-0.0 == 0.0, NaN first, as torch.sort);
// a box is suppressed when its IoU with a kept box of higher rank and the same class is > threshold.
//
// Strategy (n boxes, tiles of kTile = 64 boxes, T = ceil(n / 64) tiles):
//
// * n <= kSmallMaxBoxes: ONE launch of one block does everything in shared memory: ranks by counting (O(n^2) key
//   comparisons spread over the block), the 64-bit suppression masks, and the sweep.  No workspace.
// * larger n:
//   1. sort: radix-sort keys made from the scores (a monotone map of the float bits: -0.0 folded onto 0.0, every
//      NaN onto the largest key) with cub::DeviceRadixSort::SortPairsDescending, which is stable.  batched_nms
//      then stable-sorts that order by class (a second radix sort), so each class is one contiguous run and, within
//      it, in rank order;
//   2. gather the boxes in that order (in the compute type), with their areas, and per tile its class range and
//      the bounding box of the boxes in it that can take part in a suppression (width and height > 0, finite area);
//   3. masks: one 64-thread block per tile pair (r, c >= r) of the upper triangle: thread i sets bit j when box
//      r*64+i suppresses box c*64+j.  Pairs that cannot interact are skipped without reading a box: tiles whose
//      class ranges do not meet, and (threshold >= 0) tiles whose bounding boxes do not overlap (a suppression
//      needs a positive intersection).  A one-byte flag per tile pair says whether any bit is set;
//   4. the sweep: one block walks the row tiles in order, with the "removed" bits of all n boxes in shared memory.
//      Warp 0 resolves the 64 boxes of a tile against each other (a short serial loop over the diagonal words in
//      registers), then all threads OR the rows of the tile's kept boxes into the removed bits of the later tiles,
//      reading only the tile pairs whose flag is set;
//   5. plain NMS writes the kept indices during the sweep, already in rank order; batched NMS marks kept boxes by
//      rank and compacts them in rank order (cub::DeviceSelect::Flagged).
//   Nothing is synchronised: the caller reads *num_kept once, after the work.
//
// Memory of the large path, in bytes, for n boxes (T = ceil(n / 64), P = T (T + 1) / 2 tile pairs):
//   masks 512 P (~ n^2 / 16) + flags P + about 100 n (sort keys and values, sorted boxes, areas, class ids, CUB's
//   temporary storage) + 64 T.  That is ~6.3 MB at 10,000 boxes, ~0.63 GB at 100,000 and ~62.5 GB at 2^20 (the
//   cap, kNmsMaxBoxes); the sweep's shared memory is 8 T bytes (128 KiB at the cap).  torchvision's CUDA NMS
//   holds the full n x T mask (n^2 / 8 bytes) and copies it to the host.
#include <cmath>
#include <cstring>

#include "arch/algorithms.h"
#include "arch/instructions.h"
#include "arch/memory.h"
#include "arch/sync.h"
#include "arch/warp.h"
#include "device_utils.cuh"
#include "nms.h"

namespace deepops {
namespace {

constexpr int kTile = 64;               // boxes per tile: one 64-bit mask word per (box, tile)
constexpr int kSmallMaxBoxes = 512;     // the single-block path takes up to this many boxes
constexpr int kSmallThreads = 512;
constexpr int kSweepThreads = 1024;     // the one block of the large path's sweep
constexpr int kThreads = 256;           // elementwise helper kernels
constexpr int kIouThreads = 256;        // box_iou: threads along a row of the output
constexpr size_t kAlign = 256;          // alignment of each workspace buffer
constexpr int kHelperBlocksPerSm = 8;  // grid cap of the helper kernels (grid-stride beyond)

template <typename C> struct alignas(4 * sizeof(C)) Box { C x1, y1, x2, y2; };

// ------------------------------------------------------------------------------------------ exact arithmetic
using arch::add_rn;
using arch::div_rn;
using arch::mul_rn;
using arch::sub_rn;

template <typename C> __device__ __forceinline__ C area_of(const Box<C>& b) {
  return mul_rn(sub_rn(b.x2, b.x1), sub_rn(b.y2, b.y1));
}

// torchvision's CPU test, operation for operation: does kept box i suppress box j?  std::max(a, b) is
// (a < b ? b : a) and std::min(a, b) is (b < a ? b : a), which matters for NaN.  thr is the threshold in the
// compute type, rounded toward -infinity, so that `ovr > thr` equals torchvision's `(double)ovr > threshold`.
template <typename C>
__device__ __forceinline__ bool suppresses(const Box<C>& i, C ai, const Box<C>& j, C aj, C thr) {
  const C xx1 = i.x1 < j.x1 ? j.x1 : i.x1;
  const C yy1 = i.y1 < j.y1 ? j.y1 : i.y1;
  const C xx2 = j.x2 < i.x2 ? j.x2 : i.x2;
  const C yy2 = j.y2 < i.y2 ? j.y2 : i.y2;
  const C dw = sub_rn(xx2, xx1), dh = sub_rn(yy2, yy1);
  const C w = C(0) < dw ? dw : C(0);
  const C h = C(0) < dh ? dh : C(0);
  const C inter = mul_rn(w, h);
  return div_rn(inter, sub_rn(add_rn(ai, aj), inter)) > thr;
}

// A box takes part in some suppression at a threshold >= 0 only with width and height > 0 and a finite area:
// otherwise its intersection with any box is 0 (or its IoU NaN, 0 or -0), never > threshold.
template <typename C> __device__ __forceinline__ bool can_interact(const Box<C>& b, C area) {
  return sub_rn(b.x2, b.x1) > C(0) && sub_rn(b.y2, b.y1) > C(0) && isfinite(area);
}

template <typename T> __device__ __forceinline__ Box<typename Compute<T>::type> load_box(const T* boxes, int64_t i) {
  return {to_compute(boxes[4 * i]), to_compute(boxes[4 * i + 1]), to_compute(boxes[4 * i + 2]),
          to_compute(boxes[4 * i + 3])};
}

// --------------------------------------------------------------------------------------------------- sort keys
// Monotone maps of the score to unsigned integers: larger score -> larger key; -0.0 and 0.0 share a key; every
// NaN takes the largest key (torch.sort(descending=True) puts NaN first).
__device__ __forceinline__ uint32_t score_key(float s) {
  if (s != s) return 0xFFFFFFFFu;
  if (s == 0.f) s = 0.f;
  const uint32_t b = arch::float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ uint64_t score_key(double s) {
  if (s != s) return ~0ull;
  if (s == 0.0) s = 0.0;
  const uint64_t b = arch::double_as_uint64(s);
  return (b >> 63) ? ~b : (b | (1ull << 63));
}
// int64 class id -> unsigned key with the same order
__device__ __forceinline__ uint64_t class_key(int64_t c) { return static_cast<uint64_t>(c) ^ (1ull << 63); }

template <typename T> using KeyOf = decltype(score_key(typename Compute<T>::type{}));

// The threshold in the compute type, rounded toward -infinity (exact comparison with a float IoU).
template <typename C> C threshold_as(double t) {
  if (sizeof(C) == sizeof(double) || std::isnan(t)) return static_cast<C>(t);
  float f = static_cast<float>(t);
  if (static_cast<double>(f) > t) f = std::nextafter(f, -INFINITY);
  return static_cast<C>(f);
}

// upper triangle of tile pairs (r <= c), numbered column by column: pair(r, c) = c (c + 1) / 2 + r
__host__ __device__ __forceinline__ int64_t pair_index(int64_t r, int64_t c) { return c * (c + 1) / 2 + r; }

// ------------------------------------------------------------------------------------ the sweep over one tile
// Warp 0 decides which of the nb boxes of tile r survive: box b is kept unless it is in `removed` or a kept box
// before it in the tile suppresses it (the diagonal words diag_lo / diag_hi: lane l holds the rows of boxes l and
// l + 32).  Every lane computes the same answer.
__device__ __forceinline__ uint64_t resolve_tile(uint64_t removed, uint64_t diag_lo, uint64_t diag_hi, int nb) {
  uint64_t keep = 0;
  for (int b = 0; b < nb; ++b) {
    const uint64_t row = arch::shfl(0xFFFFFFFFu, b < 32 ? diag_lo : diag_hi, b & 31);
    if (!((removed >> b) & 1ull)) {
      keep |= 1ull << b;
      removed |= row;
    }
  }
  return keep;
}

// ===================================================================================== single-block path (small n)
template <typename T>
__global__ void __launch_bounds__(kSmallThreads) nms_small_kernel(const T* __restrict__ boxes,
                                                                  const T* __restrict__ scores,
                                                                  const int64_t* __restrict__ idxs, int n,
                                                                  typename Compute<T>::type thr,
                                                                  int64_t* __restrict__ keep,
                                                                  int64_t* __restrict__ num_kept) {
  using C = typename Compute<T>::type;
  using K = KeyOf<T>;
  const int tiles = (n + kTile - 1) / kTile;
  DEEPOPS_DYNAMIC_SHARED(unsigned char, smem);
  // by decreasing alignment: every array starts aligned
  Box<C>* sbox = reinterpret_cast<Box<C>*>(smem);                                 // n, by rank
  uint64_t* mask = reinterpret_cast<uint64_t*>(sbox + n);                         // n x tiles
  int64_t* scls = reinterpret_cast<int64_t*>(mask + static_cast<size_t>(n) * tiles);  // n, by rank (batched)
  K* key = reinterpret_cast<K*>(scls + (idxs ? n : 0));                           // n, by input index
  C* sarea = reinterpret_cast<C*>(key + n);                                       // n, by rank
  int* order = reinterpret_cast<int*>(sarea + n);                                 // rank -> input index

  for (int i = threadIdx.x; i < n; i += blockDim.x) key[i] = score_key(to_compute(scores[i]));
  arch::sync_threads();
  // rank = number of boxes before i in the stable descending order
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const K ki = key[i];
    int rank = 0;
    for (int j = 0; j < n; ++j) {
      const K kj = key[j];
      rank += (kj > ki) || (kj == ki && j < i);
    }
    order[rank] = i;
  }
  arch::sync_threads();
  for (int r = threadIdx.x; r < n; r += blockDim.x) {
    const int i = order[r];
    sbox[r] = load_box(boxes, i);
    sarea[r] = area_of(sbox[r]);
    if (idxs) scls[r] = idxs[i];
  }
  arch::sync_threads();
  // masks: one (row, column tile) word per work item
  for (int item = threadIdx.x; item < n * tiles; item += blockDim.x) {
    const int r = item / tiles, c = item - r * tiles;
    uint64_t bits = 0;
    if (c >= r / kTile) {
      const Box<C> bi = sbox[r];
      const C ai = sarea[r];
      const int j_end = min(n, (c + 1) * kTile);
      for (int j = max(c * kTile, r + 1); j < j_end; ++j) {
        if ((!idxs || scls[j] == scls[r]) && suppresses(bi, ai, sbox[j], sarea[j], thr))
          bits |= 1ull << (j - c * kTile);
      }
    }
    mask[item] = bits;
  }
  arch::sync_threads();
  if (threadIdx.x >= 32) return;
  // the sweep, by warp 0: lane w < tiles holds the removed bits of tile w
  const int lane = threadIdx.x;
  uint64_t removed = 0;
  int64_t count = 0;
  for (int t = 0; t < tiles; ++t) {
    const int nb = min(kTile, n - t * kTile);
    const uint64_t rem_t = arch::shfl(0xFFFFFFFFu, removed, t);
    const int b0 = t * kTile + lane, b1 = b0 + 32;
    const uint64_t lo = b0 < n ? mask[static_cast<size_t>(b0) * tiles + t] : 0;
    const uint64_t hi = b1 < n ? mask[static_cast<size_t>(b1) * tiles + t] : 0;
    const uint64_t kept = resolve_tile(rem_t, lo, hi, nb);
    if (lane > t && lane < tiles) {
      for (uint64_t k = kept; k; k &= k - 1) removed |= mask[static_cast<size_t>(t * kTile + arch::ffs64(k) - 1) * tiles + lane];
    }
    for (int b = lane; b < nb; b += 32) {
      if ((kept >> b) & 1ull) keep[count + arch::popc64(kept & ((1ull << b) - 1))] = order[t * kTile + b];
    }
    count += arch::popc64(kept);
  }
  if (lane == 0) *num_kept = count;
}

// ========================================================================================= large path kernels
template <typename T>
__global__ void __launch_bounds__(kThreads) make_score_keys(const T* __restrict__ scores, int n,
                                                            KeyOf<T>* __restrict__ keys, int* __restrict__ iota) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    keys[i] = score_key(to_compute(scores[i]));
    iota[i] = i;
  }
}

__global__ void __launch_bounds__(kThreads) make_class_keys(const int64_t* __restrict__ idxs,
                                                            const int* __restrict__ order, int n,
                                                            uint64_t* __restrict__ keys, int* __restrict__ iota) {
  for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < n; p += gridDim.x * blockDim.x) {
    keys[p] = class_key(idxs[order[p]]);
    iota[p] = p;
  }
}

// Sorted position q -> rank p (batched; the identity otherwise) -> input index i.
template <typename T>
__global__ void __launch_bounds__(kThreads) gather_sorted(const T* __restrict__ boxes, const int64_t* __restrict__ idxs,
                                                          const int* __restrict__ order, const int* __restrict__ by_class,
                                                          int n, Box<typename Compute<T>::type>* __restrict__ sbox,
                                                          typename Compute<T>::type* __restrict__ sarea,
                                                          int* __restrict__ sorig, int* __restrict__ srank,
                                                          int64_t* __restrict__ scls) {
  for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n; q += gridDim.x * blockDim.x) {
    const int p = by_class ? by_class[q] : q;
    const int i = order[p];
    const auto b = load_box(boxes, i);
    sbox[q] = b;
    sarea[q] = area_of(b);
    sorig[q] = i;
    if (by_class) {
      srank[q] = p;
      scls[q] = idxs[i];
    }
  }
}

// Per tile (one warp each): the bounding box of its boxes that can interact, and its class range.
template <typename C>
__global__ void __launch_bounds__(kThreads) tile_info(const Box<C>* __restrict__ sbox, const C* __restrict__ sarea,
                                                      const int64_t* __restrict__ scls, int n, int tiles,
                                                      Box<C>* __restrict__ tbox, int64_t* __restrict__ tcls) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (warp >= tiles) return;
  C x1 = INFINITY, y1 = INFINITY, x2 = -INFINITY, y2 = -INFINITY;
  for (int k = lane; k < kTile; k += 32) {
    const int q = warp * kTile + k;
    if (q < n) {
      const Box<C> b = sbox[q];
      if (can_interact(b, sarea[q])) {
        x1 = min(x1, b.x1);
        y1 = min(y1, b.y1);
        x2 = max(x2, b.x2);
        y2 = max(y2, b.y2);
      }
    }
  }
  for (int off = 16; off > 0; off /= 2) {
    x1 = min(x1, arch::shfl_xor(0xFFFFFFFFu, x1, off));
    y1 = min(y1, arch::shfl_xor(0xFFFFFFFFu, y1, off));
    x2 = max(x2, arch::shfl_xor(0xFFFFFFFFu, x2, off));
    y2 = max(y2, arch::shfl_xor(0xFFFFFFFFu, y2, off));
  }
  if (lane == 0) {
    tbox[warp] = {x1, y1, x2, y2};
    if (scls) {
      tcls[2 * warp] = scls[warp * kTile];
      tcls[2 * warp + 1] = scls[min(n, (warp + 1) * kTile) - 1];
    }
  }
}

template <typename C>
__global__ void __launch_bounds__(kTile) mask_kernel(const Box<C>* __restrict__ sbox, const C* __restrict__ sarea,
                                                     const int64_t* __restrict__ scls, const Box<C>* __restrict__ tbox,
                                                     const int64_t* __restrict__ tcls, int n, C thr, bool spatial,
                                                     uint64_t* __restrict__ mask, uint8_t* __restrict__ flags) {
  const int64_t pair = blockIdx.x;
  // column c: the largest c with c (c + 1) / 2 <= pair
  int64_t c = static_cast<int64_t>((sqrt(8.0 * static_cast<double>(pair) + 1.0) - 1.0) / 2.0);
  while (c * (c + 1) / 2 > pair) --c;
  while ((c + 1) * (c + 2) / 2 <= pair) ++c;
  const int64_t r = pair - c * (c + 1) / 2;
  bool skip = scls && tcls[2 * c] > tcls[2 * r + 1];  // classes sorted: tile c's first class after r's last
  if (spatial && !skip) {
    const Box<C> a = tbox[r], b = tbox[c];
    const C ox = sub_rn(min(a.x2, b.x2), max(a.x1, b.x1)), oy = sub_rn(min(a.y2, b.y2), max(a.y1, b.y1));
    skip = !(ox > C(0) && oy > C(0));
  }
  if (skip) {  // nothing to read, nothing to write: the sweep reads the flag only
    if (threadIdx.x == 0) flags[pair] = 0;
    return;
  }
  __shared__ Box<C> cbox[kTile];
  __shared__ C carea[kTile];
  __shared__ int64_t ccls[kTile];
  const int64_t col0 = c * kTile;
  const int ncol = static_cast<int>(n - col0 < kTile ? n - col0 : kTile);
  if (static_cast<int>(threadIdx.x) < ncol) {
    cbox[threadIdx.x] = sbox[col0 + threadIdx.x];
    carea[threadIdx.x] = sarea[col0 + threadIdx.x];
    if (scls) ccls[threadIdx.x] = scls[col0 + threadIdx.x];
  }
  arch::sync_threads();
  const int64_t row = r * kTile + threadIdx.x;
  uint64_t bits = 0;
  if (row < n) {
    const Box<C> bi = sbox[row];
    const C ai = sarea[row];
    const int64_t ci = scls ? scls[row] : 0;
    for (int j = (r == c) ? threadIdx.x + 1 : 0; j < ncol; ++j) {
      if ((!scls || ccls[j] == ci) && suppresses(bi, ai, cbox[j], carea[j], thr)) bits |= 1ull << j;
    }
  }
  mask[pair * kTile + threadIdx.x] = bits;
  const int any = arch::sync_threads_or(bits != 0);
  if (threadIdx.x == 0) flags[pair] = static_cast<uint8_t>(any);
}

// The sweep (one block).  Plain NMS writes keep[] in rank order; batched NMS sets kept_by_rank[rank] instead.
__global__ void __launch_bounds__(kSweepThreads) sweep_kernel(const uint64_t* __restrict__ mask,
                                                              const uint8_t* __restrict__ flags,
                                                              const int* __restrict__ sorig,
                                                              const int* __restrict__ srank, int n, int tiles,
                                                              int64_t* __restrict__ keep,
                                                              uint8_t* __restrict__ kept_by_rank,
                                                              int64_t* __restrict__ num_kept) {
  DEEPOPS_DYNAMIC_SHARED(uint64_t, removed);  // tiles words
  __shared__ uint64_t kept_s;
  int64_t count = 0;  // meaningful in warp 0
  for (int t = threadIdx.x; t < tiles; t += blockDim.x) removed[t] = 0;
  arch::sync_threads();
  for (int r = 0; r < tiles; ++r) {
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      const int nb = min(kTile, n - r * kTile);
      const int64_t diag = pair_index(r, r);
      uint64_t kept;
      if (flags[diag]) {
        const uint64_t lo = mask[diag * kTile + lane], hi = mask[diag * kTile + lane + 32];
        kept = resolve_tile(removed[r], lo, hi, nb);
      } else {  // no box of the tile suppresses another
        kept = ~removed[r] & (nb == 64 ? ~0ull : ((1ull << nb) - 1));
      }
      for (int b = lane; b < nb; b += 32) {
        if ((kept >> b) & 1ull) {
          const int q = r * kTile + b;
          if (srank) kept_by_rank[srank[q]] = 1;
          else keep[count + arch::popc64(kept & ((1ull << b) - 1))] = sorig[q];
        }
      }
      count += arch::popc64(kept);
      if (lane == 0) kept_s = kept;
    }
    arch::sync_threads();
    const uint64_t kept = kept_s;
    if (kept) {
      for (int c = r + 1 + threadIdx.x; c < tiles; c += blockDim.x) {
        const int64_t pair = pair_index(r, c);
        if (!flags[pair]) continue;
        uint64_t w = 0;
        for (uint64_t k = kept; k; k &= k - 1) w |= mask[pair * kTile + arch::ffs64(k) - 1];
        removed[c] |= w;
      }
    }
    arch::sync_threads();
  }
  if (threadIdx.x == 0 && !srank) *num_kept = count;
}

// ------------------------------------------------------------------------------------------ workspace layout
// The same code lays the buffers out and measures them (base == nullptr).
struct Carver {
  unsigned char* base;
  size_t used = 0;
  template <typename U> U* take(size_t count) {
    U* p = base ? reinterpret_cast<U*>(base + used) : nullptr;
    used += (count * sizeof(U) + kAlign - 1) / kAlign * kAlign;
    return p;
  }
};

template <typename T> struct Plan {
  using C = typename Compute<T>::type;
  using K = KeyOf<T>;
  K *keys_in, *keys_out;
  int *iota, *order;
  uint64_t *ckeys_in, *ckeys_out;
  int *piota, *by_class;
  Box<C>* sbox;
  C* sarea;
  int *sorig, *srank;
  int64_t* scls;
  Box<C>* tbox;
  int64_t* tcls;
  uint64_t* mask;
  uint8_t* flags;
  uint8_t* kept_by_rank;
  void* temp;
  size_t temp_bytes = 0;
  size_t total = 0;

  Plan(void* workspace, int n, bool batched) {
    const int64_t tiles = (n + kTile - 1) / kTile, pairs = tiles * (tiles + 1) / 2;
    // CUB's temporary storage (the largest of the three uses)
    size_t b1 = 0, b2 = 0, b3 = 0;
    arch::sort_pairs_descending(nullptr, b1, (K*)nullptr, (K*)nullptr, (int*)nullptr, (int*)nullptr, n);
    if (batched) {
      arch::sort_pairs(nullptr, b2, (uint64_t*)nullptr, (uint64_t*)nullptr, (int*)nullptr, (int*)nullptr, n);
      arch::select_flagged(nullptr, b3, (int*)nullptr, (uint8_t*)nullptr, (int64_t*)nullptr, (int64_t*)nullptr, n);
    }
    temp_bytes = b1 > b2 ? (b1 > b3 ? b1 : b3) : (b2 > b3 ? b2 : b3);
    Carver cv{static_cast<unsigned char*>(workspace)};
    keys_in = cv.take<K>(n);
    keys_out = cv.take<K>(n);
    iota = cv.take<int>(n);
    order = cv.take<int>(n);
    ckeys_in = batched ? cv.take<uint64_t>(n) : nullptr;
    ckeys_out = batched ? cv.take<uint64_t>(n) : nullptr;
    piota = batched ? cv.take<int>(n) : nullptr;
    by_class = batched ? cv.take<int>(n) : nullptr;
    sbox = cv.take<Box<C>>(n);
    sarea = cv.take<C>(n);
    sorig = cv.take<int>(n);
    srank = batched ? cv.take<int>(n) : nullptr;
    scls = batched ? cv.take<int64_t>(n) : nullptr;
    tbox = cv.take<Box<C>>(tiles);
    tcls = batched ? cv.take<int64_t>(2 * tiles) : nullptr;
    mask = cv.take<uint64_t>(static_cast<size_t>(pairs) * kTile);
    flags = cv.take<uint8_t>(pairs);
    kept_by_rank = batched ? cv.take<uint8_t>(n) : nullptr;
    temp = cv.take<unsigned char>(temp_bytes);
    total = cv.used;
  }
};

template <typename T> size_t small_smem_bytes(int n, bool batched) {
  using C = typename Compute<T>::type;
  const size_t tiles = (n + kTile - 1) / kTile;
  return n * sizeof(Box<C>) + n * tiles * 8 + n * sizeof(KeyOf<T>) + n * sizeof(C) + (batched ? n * 8 : 0) + n * 4;
}

unsigned blocks_for(int64_t n, int threads) { return arch::grid_1d(n, threads, 1, kHelperBlocksPerSm); }

template <typename T>
cudaError_t nms_impl(const T* boxes, const T* scores, const int64_t* idxs, int n, double threshold, void* workspace,
                     size_t workspace_bytes, int64_t* keep, int64_t* num_kept, cudaStream_t stream) {
  using C = typename Compute<T>::type;
  const C thr = threshold_as<C>(threshold);
  if (n == 0) return arch::memset_async(num_kept, 0, sizeof(int64_t), stream);
  if (n <= kSmallMaxBoxes) {
    const size_t smem = small_smem_bytes<T>(n, idxs != nullptr);
    cudaError_t err = arch::allow_dynamic_smem<nms_small_kernel<T>>(smem);
    if (err != cudaSuccess) return err;
    return arch::launch<nms_small_kernel<T>>(1, kSmallThreads, smem, stream, boxes, scores, idxs, n, thr, keep,
                                             num_kept);
  }
  const bool batched = idxs != nullptr;
  Plan<T> p(workspace, n, batched);
  if (workspace == nullptr || workspace_bytes < p.total) return cudaErrorInvalidValue;
  const int tiles = (n + kTile - 1) / kTile;
  const int64_t pairs = static_cast<int64_t>(tiles) * (tiles + 1) / 2;
  cudaError_t err;
  // 1. rank order (stable), then (batched) a stable sort of it by class
  err = arch::launch<make_score_keys<T>>(blocks_for(n, kThreads), kThreads, 0, stream, scores, n, p.keys_in, p.iota);
  if (err != cudaSuccess) return err;
  size_t tb = p.temp_bytes;
  err = arch::sort_pairs_descending(p.temp, tb, p.keys_in, p.keys_out, p.iota, p.order, n, 0,
                                                  static_cast<int>(sizeof(KeyOf<T>) * 8), stream);
  if (err != cudaSuccess) return err;
  if (batched) {
    err = arch::launch<make_class_keys>(blocks_for(n, kThreads), kThreads, 0, stream, idxs, p.order, n, p.ckeys_in,
                                        p.piota);
    if (err != cudaSuccess) return err;
    tb = p.temp_bytes;
    err = arch::sort_pairs(p.temp, tb, p.ckeys_in, p.ckeys_out, p.piota, p.by_class, n, 0, 64, stream);
    if (err != cudaSuccess) return err;
    if ((err = arch::memset_async(p.kept_by_rank, 0, n, stream)) != cudaSuccess) return err;
  }
  // 2. boxes in that order, tile summaries
  err = arch::launch<gather_sorted<T>>(blocks_for(n, kThreads), kThreads, 0, stream, boxes, idxs, p.order,
                                       p.by_class, n, p.sbox, p.sarea, p.sorig, p.srank, p.scls);
  if (err != cudaSuccess) return err;
  // one warp per tile
  err = arch::launch<tile_info<C>>(arch::grid_1d(int64_t(tiles) * 32, kThreads), kThreads, 0, stream, p.sbox, p.sarea,
                                   p.scls, n, tiles, p.tbox, p.tcls);
  if (err != cudaSuccess) return err;
  // 3. masks of the tile pairs that can interact (spatial pruning is valid for thresholds >= 0 only)
  const bool spatial = threshold >= 0.0;
  err = arch::launch<mask_kernel<C>>(static_cast<unsigned>(pairs), kTile, 0, stream, p.sbox, p.sarea, p.scls, p.tbox,
                                     p.tcls, n, thr, spatial, p.mask, p.flags);
  if (err != cudaSuccess) return err;
  // 4. the sweep
  const size_t smem = static_cast<size_t>(tiles) * sizeof(uint64_t);
  if ((err = arch::allow_dynamic_smem<sweep_kernel>(smem)) != cudaSuccess) return err;
  err = arch::launch<sweep_kernel>(1, kSweepThreads, smem, stream, p.mask, p.flags, p.sorig, p.srank, n, tiles, keep,
                                   p.kept_by_rank, num_kept);
  if (err != cudaSuccess) return err;
  // 5. batched: the kept boxes in rank order
  if (batched) {
    tb = p.temp_bytes;
    err = arch::select_flagged(p.temp, tb, p.order, p.kept_by_rank, keep, num_kept, n, stream);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

// ==================================================================================================== box_iou
// torchvision.ops.box_iou: lt = max, rb = min (NaN propagating, as torch.max/min), wh = clamp(rb - lt, min=0) with
// the difference rounded to the 16-bit type first for 16-bit inputs, iou = inter / (area1 + area2 - inter).
template <typename C, typename T> __device__ __forceinline__ C round_like(C v, T) { return v; }
__device__ __forceinline__ float round_like(float v, __half) { return __half2float(__float2half_rn(v)); }
__device__ __forceinline__ float round_like(float v, __nv_bfloat16) { return __bfloat162float(__float2bfloat16_rn(v)); }
template <typename C> __device__ __forceinline__ C nan_max(C a, C b) { return (a != a || a > b) ? a : b; }
template <typename C> __device__ __forceinline__ C nan_min(C a, C b) { return (a != a || a < b) ? a : b; }

template <typename T>
__global__ void __launch_bounds__(kIouThreads) box_iou_kernel(const T* __restrict__ b1, const T* __restrict__ b2,
                                                              int64_t n, int64_t m,
                                                              typename Compute<T>::type* __restrict__ out) {
  using C = typename Compute<T>::type;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= m) return;
  const Box<C> bj = load_box(b2, j);
  const C aj = area_of(bj);
  for (int64_t i = blockIdx.y; i < n; i += gridDim.y) {
    const Box<C> bi = load_box(b1, i);
    const C ai = area_of(bi);
    C w = round_like(sub_rn(nan_min(bi.x2, bj.x2), nan_max(bi.x1, bj.x1)), T{});
    C h = round_like(sub_rn(nan_min(bi.y2, bj.y2), nan_max(bi.y1, bj.y1)), T{});
    w = w < C(0) ? C(0) : w;  // clamp(min=0): NaN stays NaN
    h = h < C(0) ? C(0) : h;
    const C inter = mul_rn(w, h);
    out[i * m + j] = div_rn(inter, sub_rn(add_rn(ai, aj), inter));
  }
}

}  // namespace

size_t nms_workspace_bytes(DType dt, int64_t n, bool batched) {
  if (n <= kSmallMaxBoxes || n > kNmsMaxBoxes) return 0;
  size_t bytes = 0;
  dispatch_float(dt, [&](auto t) {
    bytes = Plan<decltype(t)>(nullptr, static_cast<int>(n), batched).total;
    return cudaSuccess;
  });
  return bytes;
}

cudaError_t nms(DType dt, const void* boxes, const void* scores, const int64_t* idxs, int64_t n, double iou_threshold,
                void* workspace, size_t workspace_bytes, int64_t* keep, int64_t* num_kept, cudaStream_t stream) {
  if (n < 0 || n > kNmsMaxBoxes) return cudaErrorInvalidValue;
  return dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    return nms_impl<T>(static_cast<const T*>(boxes), static_cast<const T*>(scores), idxs, static_cast<int>(n),
                       iou_threshold, workspace, workspace_bytes, keep, num_kept, stream);
  });
}

cudaError_t box_iou(DType dt, const void* boxes1, const void* boxes2, int64_t n, int64_t m, void* out,
                    cudaStream_t stream) {
  if (n == 0 || m == 0) return cudaSuccess;
  return dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    using C = typename Compute<T>::type;
    const dim3 grid(arch::grid_1d(m, kIouThreads), static_cast<unsigned>(n < arch::kMaxGridYZ ? n : arch::kMaxGridYZ));
    return arch::launch<box_iou_kernel<T>>(grid, kIouThreads, 0, stream, static_cast<const T*>(boxes1),
                                           static_cast<const T*>(boxes2), n, m, static_cast<C*>(out));
  });
}

}  // namespace deepops
