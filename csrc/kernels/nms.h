// Non-maximum suppression and pairwise box IoU launchers (PyTorch-free).  Semantics: torchvision.ops.nms /
// batched_nms / box_iou with the arithmetic of torchvision's CPU kernel (see nms.cu).
//
// NMS needs a device workspace whose size depends on the number of boxes: ask nms_workspace_bytes() and hand in a
// buffer of at least that many bytes (any alignment of 256 bytes or more).  The kept indices are written to keep
// (room for n int64) and their number to *num_kept (device memory); nothing is synchronised: read num_kept after
// the stream has reached this point.
#pragma once

#include <cstddef>

#include "common.h"

namespace deepops {

// The most boxes one NMS call takes on the GPU.  Its memory grows as n^2 / 16 bytes (see nms.cu): 62.5 GiB here.
constexpr int64_t kNmsMaxBoxes = int64_t(1) << 20;

// Bytes of workspace nms() needs for n boxes (0 when n is small enough for the single-block path).
size_t nms_workspace_bytes(DType dt, int64_t n, bool batched);

// boxes: n x 4 (x1, y1, x2, y2), contiguous, dtype dt; scores: n, dtype dt; idxs: n class ids, or nullptr for plain
// NMS.  iou_threshold: a box is suppressed when its IoU with a kept box of higher rank (stable descending score
// order) and the same class is > iou_threshold.  Writes the kept original indices, by rank, to keep[0, *num_kept).
cudaError_t nms(DType dt, const void* boxes, const void* scores, const int64_t* idxs, int64_t n, double iou_threshold,
                void* workspace, size_t workspace_bytes, int64_t* keep, int64_t* num_kept, cudaStream_t stream);

// out (n x m, row-major) = IoU of boxes1 (n x 4) and boxes2 (m x 4), both contiguous of dtype dt.  out has dtype
// float32 when dt is a 16-bit type, dt otherwise (as torchvision.ops.box_iou).
cudaError_t box_iou(DType dt, const void* boxes1, const void* boxes2, int64_t n, int64_t m, void* out,
                    cudaStream_t stream);

}  // namespace deepops
