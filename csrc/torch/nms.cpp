// CUDA binding of nms / batched_nms / box_iou: checks, workspace (a byte tensor from PyTorch's caching allocator,
// sized by nms_workspace_bytes), current stream, launcher call.  NMS synchronises once, to read the number of kept
// boxes, and returns a view of the first that many indices.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../kernels/nms.h"
#include "common.h"

namespace deepops_torch {
namespace {

void check_boxes(const at::Tensor& t, const char* arg, const char* op) {
  check_float_device(t, arg, op);
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(1) == 4, "deepops.", op, ": '", arg,
                    "' must have shape (N, 4) as (x1, y1, x2, y2), got ", t.sizes());
}

at::Tensor run_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor* idxs, double threshold,
                   const char* op) {
  check_boxes(boxes, "boxes", op);
  TORCH_CHECK(scores.device() == boxes.device(), "deepops.", op, ": 'boxes' is on ", boxes.device(),
              " but 'scores' is on ", scores.device());
  TORCH_CHECK_TYPE(scores.scalar_type() == boxes.scalar_type(), "deepops.", op, ": 'scores' has dtype ",
                   py_dtype(scores.scalar_type()), " but 'boxes' has dtype ", py_dtype(boxes.scalar_type()));
  TORCH_CHECK_VALUE(scores.dim() == 1, "deepops.", op, ": 'scores' must be 1-D, got shape ", scores.sizes());
  const int64_t n = boxes.size(0);
  TORCH_CHECK_VALUE(scores.size(0) == n, "deepops.", op, ": 'boxes' has ", n, " boxes but 'scores' has ",
                    scores.size(0), " scores");
  at::Tensor cls;
  if (idxs) {
    TORCH_CHECK(idxs->device() == boxes.device(), "deepops.", op, ": 'boxes' is on ", boxes.device(),
                " but 'idxs' is on ", idxs->device());
    TORCH_CHECK_TYPE(at::isIntegralType(idxs->scalar_type(), /*includeBool=*/false), "deepops.", op,
                     ": 'idxs' (class indices) must have an integer dtype, got ", py_dtype(idxs->scalar_type()));
    TORCH_CHECK_VALUE(idxs->dim() == 1, "deepops.", op, ": 'idxs' must be 1-D, got shape ", idxs->sizes());
    TORCH_CHECK_VALUE(idxs->size(0) == n, "deepops.", op, ": 'boxes' has ", n, " boxes but 'idxs' has ",
                      idxs->size(0), " entries");
  }
  TORCH_CHECK_VALUE(n <= deepops::kNmsMaxBoxes, "deepops.", op, ": at most ", deepops::kNmsMaxBoxes,
                    " boxes per call on the GPU (its memory grows as N^2 / 16 bytes), got ", n);
  auto long_opts = boxes.options().dtype(at::kLong);
  if (n == 0) return at::empty({0}, long_opts);
  DeviceGuard guard(boxes.device());
  const at::Tensor b = boxes.contiguous(), s = scores.contiguous();
  if (idxs) cls = idxs->to(at::kLong).contiguous();
  const DType dt = dtype_of(b);
  const size_t ws_bytes = deepops::nms_workspace_bytes(dt, n, idxs != nullptr);
  at::Tensor ws;
  if (ws_bytes) ws = at::empty({static_cast<int64_t>(ws_bytes)}, boxes.options().dtype(at::kByte));
  at::Tensor keep = at::empty({n}, long_opts);
  at::Tensor count = at::empty({1}, long_opts);
  check_launch(deepops::nms(dt, b.const_data_ptr(), s.const_data_ptr(), idxs ? cls.const_data_ptr<int64_t>() : nullptr,
                            n, threshold, ws_bytes ? ws.mutable_data_ptr() : nullptr, ws_bytes,
                            keep.mutable_data_ptr<int64_t>(), count.mutable_data_ptr<int64_t>(), current_stream()),
               op);
  const int64_t kept = count.item<int64_t>();  // the one synchronisation: the output size depends on the data
  return keep.narrow(0, 0, kept);
}

at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  return run_nms(boxes, scores, nullptr, iou_threshold, "nms");
}

at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                       double iou_threshold) {
  return run_nms(boxes, scores, &idxs, iou_threshold, "batched_nms");
}

at::Tensor box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_boxes(boxes1, "boxes1", "box_iou");
  check_boxes(boxes2, "boxes2", "box_iou");
  check_same(boxes1, boxes2, "boxes1", "boxes2", "box_iou", /*shape=*/false);
  DeviceGuard guard(boxes1.device());
  const auto st = boxes1.scalar_type();
  const auto out_type = (st == at::kHalf || st == at::kBFloat16) ? at::kFloat : st;
  at::Tensor out = at::empty({boxes1.size(0), boxes2.size(0)}, boxes1.options().dtype(out_type));
  if (out.numel() == 0) return out;
  const at::Tensor a = boxes1.contiguous(), b = boxes2.contiguous();
  check_launch(deepops::box_iou(dtype_of(a), a.const_data_ptr(), b.const_data_ptr(), a.size(0), b.size(0),
                                out.mutable_data_ptr(), current_stream()),
               "box_iou");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(deepops, DEEPOPS_DISPATCH_KEY, m) {
  m.impl("nms", &nms);
  m.impl("batched_nms", &batched_nms);
  m.impl("box_iou", &box_iou);
}

}  // namespace deepops_torch
