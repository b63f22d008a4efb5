"""``deepops train detector``, ``deepops predict detector`` and ``deepops count``: the cell detector's commands.

* ``train detector``: trains ``deepops.models.detector.CellDetector`` on SIMCEP-like images generated on the fly
  (``--presets``), with the shared training conventions (``deepops.train.common``): seeds, ``--device``, torchrun
  (each rank draws its own image stream), progress bars, ``last.pt`` checkpoints every epoch, ``--resume``.
  ``--time-limit`` stops after the epoch in which the limit is reached (for the "trains within N minutes" goals).
* ``predict detector``: evaluates a checkpoint on held-out generated sets of each preset, in every decoding mode
  (with and without peak finding / NMS), writing ``report.json`` and overlay PNGs.
* ``count IMAGES...``: detects and counts nuclei in TIFF (8/16-bit, 2-D, optionally with channels) and PNG images,
  in overlapping tiles for large images; writes ``<name>.csv`` and ``<name>_overlay.png`` per image and prints the
  counts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_OUT = "runs/detector"


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def register(parsers) -> None:
    from ..detection.decode import DEFAULT_IOU, DEFAULT_THRESHOLD, MODES

    t = parsers["train"].add_parser("detector", help="train the cell detector on generated SIMCEP-like images")
    t.add_argument("--out", default=DEFAULT_OUT, help=f"output folder for checkpoints and logs (default {DEFAULT_OUT})")
    t.add_argument("--presets", type=_csv, default=["easy", "crowded"], help="SIMCEP presets to mix (default easy,crowded)")
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--steps", type=int, default=40, help="optimiser steps per epoch (default 40)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--width", type=int, default=16, help="network width (channels of the middle stage)")
    t.add_argument("--size", type=int, default=128, help="training image size; nuclei count scaled to keep density (default 128)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the GPU if there is one)")
    t.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (e.g. OUT/last.pt)")
    t.add_argument("--workers", type=int, default=0, help="DataLoader worker processes generating images")
    t.add_argument("--val-images", type=int, default=32, help="held-out images per preset scored after each epoch")
    t.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="training-time budget in seconds: the learning-rate schedule follows the larger of step and time progress "
        "and training stops (with a checkpoint) when either reaches the end",
    )
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=train_main)

    p = parsers["predict"].add_parser("detector", help="evaluate the cell detector on held-out generated images")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--presets", type=_csv, default=["easy", "crowded", "noisy"])
    p.add_argument("--images", type=int, default=200, help="held-out images per preset (default 200)")
    p.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the fixed held-out seed)")
    p.add_argument("--threshold", type=float, default=None, help=f"score threshold (default: checkpoint's, {DEFAULT_THRESHOLD})")
    p.add_argument("--iou", type=float, default=None, help=f"NMS IoU threshold (default: checkpoint's, {DEFAULT_IOU})")
    p.add_argument("--modes", type=_csv, default=list(MODES), help=f"decoding modes to score (default {','.join(MODES)})")
    p.add_argument("--out", default=None, help="folder for report.json and overlay PNGs (default: next to the checkpoint)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=predict_main)

    c = parsers["top"].add_parser("count", help="detect and count cell nuclei in TIFF / PNG images")
    c.add_argument("images", nargs="+", help="TIFF or PNG files")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--threshold", type=float, default=None, help=f"score threshold (default {DEFAULT_THRESHOLD})")
    c.add_argument("--iou", type=float, default=None, help=f"NMS IoU threshold (default {DEFAULT_IOU})")
    c.add_argument("--channel", type=int, default=None, help="channel of a multi-channel image (default: max over channels)")
    c.add_argument("--tile", type=int, default=512, help="tile size for large images, multiple of 4 (default 512)")
    c.add_argument("--overlap", type=int, default=96, help="tile overlap in pixels, multiple of 4 (default 96)")
    c.add_argument("--out", default=None, help="folder for the CSVs and overlays (default: next to each image)")
    c.add_argument("--device", default=None)
    c.set_defaults(func=count_main)


# ------------------------------------------------------------------------------------------------------- train


def _load_model(path: str, device):
    from ..models.detector import build
    from ..train.common import load_checkpoint

    state = load_checkpoint(path, map_location="cpu")
    model = build(state["config"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def _decode_settings(args: argparse.Namespace, cfg: dict) -> tuple[float, float]:
    """(score threshold, NMS IoU): the command line's, else the checkpoint's, else the decoder's defaults."""
    from ..detection.decode import DEFAULT_IOU, DEFAULT_THRESHOLD

    thr = args.threshold if args.threshold is not None else cfg.get("threshold", DEFAULT_THRESHOLD)
    iou = args.iou if args.iou is not None else cfg.get("iou", DEFAULT_IOU)
    return thr, iou


def train_main(args: argparse.Namespace) -> int:
    import math

    import torch

    from .._progress import Progress
    from ..detection.data import SyntheticBatches, detector_loss
    from ..detection.decode import DEFAULT_IOU, DEFAULT_THRESHOLD
    from ..detection.evaluate import evaluate_preset
    from ..models.detector import CellDetector
    from ..train import common as C

    if args.threads:
        torch.set_num_threads(args.threads)
    dist = C.setup_distributed(args.device)
    C.seed_everything(args.seed + dist.rank)
    out = Path(args.out)
    config = {k: v for k, v in vars(args).items() if k != "func"}
    config.update(width=args.width, in_channels=1, threshold=DEFAULT_THRESHOLD, iou=DEFAULT_IOU)
    model = CellDetector(width=args.width).to(dist.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    total = args.epochs * args.steps

    warm = min(50, total // 10)

    def progress(step: int, seconds: float) -> float:  # fraction of the run done, by steps or by the time budget
        p = step / total
        if args.time_limit:
            p = max(p, seconds / args.time_limit)
        return p

    def lr_at(step: int, p: float) -> float:  # short warm-up, then cosine decay to 5% at p = 1
        if step < warm:
            return args.lr * (step + 1) / warm
        p0 = warm / total
        q = min(max((p - p0) / max(1 - p0, 1e-9), 0.0), 1.0)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * q)))

    start_epoch, history = C.resume(args.resume, model, opt)
    history = history or []
    ddp = C.wrap_ddp(model, dist)
    data = SyntheticBatches(
        args.presets, args.batch_size, args.seed, rank=dist.rank, start=start_epoch * args.steps, size=args.size
    )
    loader = iter(
        torch.utils.data.DataLoader(data, batch_size=None, num_workers=args.workers, persistent_workers=args.workers > 0)
    )
    elapsed = sum(h.get("epoch_s", 0.0) for h in history)
    show = False if args.no_progress or not dist.is_main else None
    for epoch in range(start_epoch, args.epochs):
        model.train()
        t0 = time.perf_counter()
        bar = Progress(args.steps, f"epoch {epoch + 1}/{args.epochs} ", enabled=show)
        sums = {"loss": 0.0, "heat": 0.0, "reg": 0.0}
        done = 0
        for i in range(args.steps):
            step = epoch * args.steps + i
            p = progress(step, elapsed + time.perf_counter() - t0)
            if p >= 1.0:
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(step, p)
            x, heat, reg, mask = (t.to(dist.device, non_blocking=True) for t in next(loader))
            losses = detector_loss(ddp(x), heat, reg, mask)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            for k in sums:
                sums[k] += float(losses[k].detach())
            done += 1
            bar.update(1, f"loss {sums['loss'] / done:.3f}")
        bar.close(summary=dist.is_main)
        epoch_s = time.perf_counter() - t0
        elapsed += epoch_s
        rec = {"epoch": epoch + 1, "steps": done, "epoch_s": epoch_s, "elapsed_s": elapsed, "lr": opt.param_groups[0]["lr"]}
        rec.update({k: C.all_reduce_mean(v / max(done, 1), dist) for k, v in sums.items()})
        if dist.is_main and args.val_images > 0:
            for preset in args.presets:
                res, _, _ = evaluate_preset(model, preset, args.val_images, seed=1, device=dist.device, modes=["peaks+nms"])
                rec[f"val_{preset}_f1"] = res["peaks+nms"]["f1"]
                rec[f"val_{preset}_count_error"] = res["peaks+nms"]["count_error"]
        history.append(rec)
        if dist.is_main:
            print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()), flush=True)
            C.save_checkpoint(out / "last.pt", model, opt, epoch + 1, config, history)
            C.write_json(out / "history.json", history)
        if done < args.steps:
            if dist.is_main:
                print(f"time limit {args.time_limit:.0f}s reached in epoch {epoch + 1}", flush=True)
            break
    C.cleanup_distributed(dist)
    return 0


# ------------------------------------------------------------------------------------------------------- predict


def predict_main(args: argparse.Namespace) -> int:
    from ..detection.evaluate import EVAL_SEED, evaluate_preset, overlay_strip
    from ..train.common import resolve_device, write_json

    device = resolve_device(args.device)
    model, state = _load_model(args.checkpoint, device)
    thr, iou = _decode_settings(args, state["config"])
    seed = EVAL_SEED if args.seed is None else args.seed
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    report = {"checkpoint": str(args.checkpoint), "seed": seed, "images": args.images, "threshold": thr, "iou": iou}
    for preset in args.presets:
        res, samples, preds = evaluate_preset(model, preset, args.images, seed, device, thr, iou, args.modes)
        report[preset] = res
        for mode in args.modes:
            r = res[mode]
            print(
                f"{preset:8s} {mode:10s} P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f} "
                f"AP50 {r['ap50']:.3f} count err {100 * r['count_error']:.2f}% (MAE {r['count_mae']:.2f})"
            )
        best = "peaks+nms" if "peaks+nms" in args.modes else args.modes[0]
        overlay_strip(samples, preds[best], out / f"overlay_{preset}.png")
        if "raw" in args.modes:
            overlay_strip(samples, preds["raw"], out / f"overlay_{preset}_raw.png")
    write_json(out / "report.json", report)
    print(f"report written to {out / 'report.json'}")
    return 0


# ------------------------------------------------------------------------------------------------------- count


def read_image(path: str | Path, channel: int | None = None):
    """A 2-D array from a TIFF (tifffile; ImageJ TZCYX axes understood) or a PNG / other Pillow image."""
    import numpy as np

    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            arr, axes = series.asarray(), series.axes
        for ax in "TZQ":  # singleton time / depth axes
            if ax in axes and arr.shape[axes.index(ax)] == 1:
                arr = arr.squeeze(axes.index(ax))
                axes = axes.replace(ax, "")
        caxes = [i for i, a in enumerate(axes) if a in "CS"]
        if len(caxes) == 1:
            arr = np.moveaxis(arr, caxes[0], 0)
        elif arr.ndim == 3:  # unlabelled: the smallest axis is the channel axis
            arr = np.moveaxis(arr, int(np.argmin(arr.shape)), 0)
    else:
        from PIL import Image

        im = Image.open(path)
        arr = np.asarray(im)
        if arr.ndim == 3:
            arr = np.moveaxis(arr[..., :3] if arr.shape[-1] == 4 else arr, -1, 0)  # drop alpha
    if arr.ndim == 2:
        if channel not in (None, 0):
            raise SystemExit(f"{path}: --channel {channel} asked for, but the image has a single channel")
        return arr
    if arr.ndim != 3:
        raise SystemExit(f"{path}: expected a 2-D image (optionally with channels), got shape {arr.shape}")
    if channel is None:
        return arr.max(axis=0)
    if not 0 <= channel < arr.shape[0]:
        raise SystemExit(f"{path}: --channel {channel} is out of range (the image has {arr.shape[0]} channels)")
    return arr[channel]


def count_main(args: argparse.Namespace) -> int:
    import numpy as np

    from ..detection.data import normalize
    from ..detection.evaluate import overlay
    from ..detection.tiling import detect
    from ..train.common import resolve_device

    device = resolve_device(args.device)
    model, state = _load_model(args.checkpoint, device)
    thr, iou = _decode_settings(args, state["config"])
    for name in args.images:
        path = Path(name)
        if not path.is_file():
            raise SystemExit(f"image not found: {path}")
        img = read_image(path, args.channel)
        boxes, scores = detect(model, normalize(img), thr, iou, tile=args.tile, overlap=args.overlap, device=device)
        folder = Path(args.out) if args.out else path.parent
        folder.mkdir(parents=True, exist_ok=True)
        rows = ["index,x1,y1,x2,y2,score,axis-0,axis-1"]
        for i, ((x1, y1, x2, y2), s) in enumerate(zip(boxes, scores)):
            rows.append(f"{i},{x1:.2f},{y1:.2f},{x2:.2f},{y2:.2f},{s:.4f},{(y1 + y2) / 2:.2f},{(x1 + x2) / 2:.2f}")
        (folder / f"{path.stem}.csv").write_text("\n".join(rows) + "\n")
        overlay(np.asarray(img), boxes).save(folder / f"{path.stem}_overlay.png")
        print(f"{path}: {len(boxes)} cells")
    return 0
