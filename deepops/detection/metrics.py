"""Detection and counting metrics, in NumPy (independent of the ops being tested).

* Matching, per image: detections in order of decreasing score each take the unmatched ground-truth box with which
  they have the highest IoU, if that IoU is >= ``iou`` (the greedy matching of PASCAL VOC / COCO).  A matched
  detection is a true positive, the others false positives; unmatched ground truth are false negatives.
* precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean, all pooled over the images.
* AP: the area under the precision-recall curve of all detections of all images ranked by score, with precision made
  monotone (all-point interpolation, PASCAL VOC 2010+).
* Counting: the count of an image is its number of detections (those that passed the decoder's threshold);
  ``count_mae`` = mean |predicted - true|; ``count_error`` = sum |predicted - true| / sum true (the relative count
  error used for the goals); ``count_error_per_image`` = mean over images with cells of |predicted - true| / true.
* Jackson & Obara's figures (``jo_*``): recall, precision and false positives per true object at IoU > 0.6 with
  detections of score >= 0.5.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) boxes as (x1, y1, x2, y2); 0 where the union is empty."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area = lambda t: np.clip(t[:, 2] - t[:, 0], 0, None) * np.clip(t[:, 3] - t[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Greedy matching; returns a bool per detection (in the given order): True if it is a true positive."""
    pred, gt = np.asarray(pred).reshape(-1, 4), np.asarray(gt).reshape(-1, 4)
    tp = np.zeros(len(pred), bool)
    if len(pred) == 0 or len(gt) == 0:
        return tp
    m = iou_matrix(pred, gt)
    taken = np.zeros(len(gt), bool)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        cand = np.where(taken, -1.0, m[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            tp[i], taken[j] = True, True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP of ranked detections (scores, TP flags) against ``n_gt`` true objects."""
    if n_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    t = np.asarray(tp, bool)[order]
    ctp, cfp = np.cumsum(t), np.cumsum(~t)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1)
    r = np.concatenate([[0.0], recall])
    p = np.concatenate([[0.0], precision])
    p = np.maximum.accumulate(p[::-1])[::-1]  # the precision envelope
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


def evaluate(
    preds: Sequence[tuple[np.ndarray, np.ndarray]], gts: Sequence[np.ndarray], iou: float = 0.5
) -> dict[str, float]:
    """Metrics over images: ``preds`` is a list of (boxes, scores), ``gts`` a list of true boxes."""
    if len(preds) != len(gts):
        raise ValueError(f"evaluate: {len(preds)} predictions for {len(gts)} ground truths")
    all_s, all_tp = [], []
    tp = fp = n_gt = 0
    abs_err, rel_err, n_true_total = [], [], 0
    jo_tp = jo_fp = 0
    for (pb, ps), g in zip(preds, gts):
        pb, ps, g = np.asarray(pb).reshape(-1, 4), np.asarray(ps).reshape(-1), np.asarray(g).reshape(-1, 4)
        t = match(pb, ps, g, iou)
        all_s.append(ps)
        all_tp.append(t)
        tp += int(t.sum())
        fp += int((~t).sum())
        n_gt += len(g)
        e = abs(len(pb) - len(g))
        abs_err.append(e)
        n_true_total += len(g)
        if len(g):
            rel_err.append(e / len(g))
        conf = ps >= 0.5
        # Jackson & Obara: IoU strictly above 0.6
        tj = match(pb[conf], ps[conf], g, np.nextafter(0.6, 1.0))
        jo_tp += int(tj.sum())
        jo_fp += int((~tj).sum())
    fn = n_gt - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_gt if n_gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    scores = np.concatenate(all_s) if all_s else np.zeros(0)
    flags = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    return {
        "images": len(gts),
        "true_objects": n_gt,
        "detections": tp + fp,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "ap50": average_precision(scores, flags, n_gt),
        "count_mae": float(np.mean(abs_err)) if abs_err else 0.0,
        "count_error": float(np.sum(abs_err) / n_true_total) if n_true_total else 0.0,
        "count_error_per_image": float(np.mean(rel_err)) if rel_err else 0.0,
        "jo_recall": jo_tp / n_gt if n_gt else 0.0,
        "jo_precision": jo_tp / (jo_tp + jo_fp) if jo_tp + jo_fp else 0.0,
        "jo_fp_per_object": jo_fp / n_gt if n_gt else 0.0,
    }
