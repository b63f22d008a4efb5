"""``deepops train detector``, ``deepops predict detector`` and ``deepops count``: the cell detector's commands.

* ``train detector``: trains ``deepops.models.detector.CellDetector`` on SIMCEP-like images generated on the fly
  (``--presets``); the training is ``deepops.train.detector``, a family of the shared loop (``deepops.train.loop``:
  seeds, ``--device``, torchrun, progress, ``last.pt`` every epoch, ``--resume``, ``--time-limit``, metrics.json).
* ``predict detector``: evaluates a checkpoint on held-out generated sets of each preset, in every decoding mode
  (with and without peak finding / NMS), writing ``report.json`` and overlay PNGs.
* ``count IMAGES...``: detects and counts nuclei in TIFF (8/16-bit, 2-D, optionally with channels; ImageJ axes),
  PNG and JPEG images read by ``deepops.data.images.read_image``, in overlapping tiles for large images; writes
  ``<name>.csv`` and ``<name>_overlay.png`` per image and prints the counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = "runs/detector"


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def register(parsers) -> None:
    from ..detection.decode import DEFAULT_IOU, DEFAULT_THRESHOLD, MODES
    from ..train.detector import DetectorConfig
    from ..train.loop import add_loop_arguments

    d = DetectorConfig()
    t = parsers["train"].add_parser(
        "detector", help="train the cell detector on generated SIMCEP-like images",
        description="Train the cell detector. With --time-limit the learning-rate schedule follows the larger of "
        "step and time progress, so a time-limited run still ends its schedule.",
    )
    add_loop_arguments(t, epochs=d.epochs, out=DEFAULT_OUT)
    t.add_argument("--steps", type=int, default=d.steps, help="optimiser steps per epoch (default %(default)s)")
    t.add_argument("--presets", type=_csv, default=d.presets, help="SIMCEP presets to mix (default easy,crowded)")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (divided among torchrun processes)")
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--width", type=int, default=d.width, help="network width (channels of the middle stage)")
    t.add_argument("--size", type=int, default=d.size, help="training image size; nuclei count scaled to keep density (default %(default)s)")
    t.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes generating images")
    t.add_argument("--val-images", type=int, default=d.val_images, help="held-out images per preset scored after each epoch")
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

    c = parsers["top"].add_parser("count", help="detect and count cell nuclei in TIFF / PNG / JPEG images")
    c.add_argument("images", nargs="+", help="TIFF, PNG or JPEG files")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--threshold", type=float, default=None, help=f"score threshold (default {DEFAULT_THRESHOLD})")
    c.add_argument("--iou", type=float, default=None, help=f"NMS IoU threshold (default {DEFAULT_IOU})")
    c.add_argument("--channel", type=int, default=None, help="channel of a multi-channel image (default: max over channels)")
    c.add_argument("--tile", type=int, default=512, help="tile size for large images, multiple of 4 (default 512)")
    c.add_argument("--overlap", type=int, default=96, help="tile overlap in pixels, multiple of 4 (default 96)")
    c.add_argument("--out", default=None, help="folder for the CSVs and overlays (default: next to each image)")
    c.add_argument("--device", default=None)
    c.set_defaults(func=count_main)


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
    from ..train.detector import DetectorConfig, train
    from ..train.loop import command_line, loop_arguments

    cfg = DetectorConfig(presets=args.presets, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         width=args.width, size=args.size, workers=args.workers, val_images=args.val_images,
                         **loop_arguments(args))
    train(cfg, command=command_line(args))
    return 0


# ------------------------------------------------------------------------------------------------------- predict


def predict_main(args: argparse.Namespace) -> int:
    from .._report import write_json
    from ..detection.evaluate import EVAL_SEED, evaluate_preset, overlay_strip
    from ..train.common import resolve_device

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


def count_main(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.images import read_image
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
        try:
            img = read_image(path, args.channel)
        except ValueError as e:  # a wrong --channel, or not a 2-D image
            raise SystemExit(str(e)) from e
        if img.ndim == 3:  # no --channel: the brightest of the channels at every pixel
            img = img.max(axis=-1)
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
