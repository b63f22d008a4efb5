"""Reproduce the cell detector's goal runs and record them under benchmarks/results/.

    PYTHONPATH=. python benchmarks/detector_goals.py [--name detector_goals] [--out runs/detector_goal] [train options...]

Runs ``deepops train detector`` (the options below, plus any given), then ``deepops predict detector`` on 200
held-out images of each preset, and writes ``benchmarks/results/<name>.json`` (commands, seeds, training time
and time per epoch, machine load before/after, metrics per preset and decoding mode, goals met) and small overlay PNGs.
Timings depend on the machine's load: the load averages are recorded with them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRAIN = "--epochs 20 --steps 30 --batch-size 16 --size 128 --lr 3e-3 --width 16 --seed 0 --val-images 16 --time-limit 840"
GOALS = {"easy": {"f1": 0.95, "count_error": 0.03}, "crowded": {"f1": 0.85, "count_error": 0.08}}


def load() -> list[float]:
    return list(os.getloadavg())


def run(cmd: list[str]) -> float:
    print("+", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - t0


def main() -> int:
    extra = sys.argv[1:]
    name = "detector_goals"
    if "--name" in extra:
        i = extra.index("--name")
        name = extra[i + 1]
        del extra[i : i + 2]
    out = "runs/detector_goal"
    if "--out" in extra:
        out = extra[extra.index("--out") + 1]
    else:
        extra = ["--out", out] + extra
    train = [sys.executable, "-m", "deepops", "train", "detector", *TRAIN.split(), "--no-progress", *extra]
    rec = {"train_command": shlex.join(["deepops", *train[3:]]), "load_before": load(), "cores": os.cpu_count()}
    rec["train_wall_s"] = run(train)
    rec["load_after_train"] = load()
    hist = json.loads((ROOT / out / "history.json").read_text())
    rec["history"] = hist
    rec["train_s"] = hist[-1]["elapsed_s"]
    rec["epochs"] = len(hist)
    rec["steps"] = sum(h["steps"] for h in hist)
    rec["s_per_epoch"] = rec["train_s"] / len(hist)
    rec["s_per_step"] = rec["train_s"] / rec["steps"]
    ev = ROOT / out / "eval"
    # paths relative to the repository (the commands run there), so that the recorded command holds on any machine
    pred = [sys.executable, "-m", "deepops", "predict", "detector", "--checkpoint", f"{out}/last.pt", "--images", "200",
            "--out", f"{out}/eval"]
    rec["predict_command"] = shlex.join(["deepops", *pred[3:]])
    rec["predict_wall_s"] = run(pred)
    report = json.loads((ev / "report.json").read_text())
    rec["eval_seed"] = report["seed"]
    rec["threshold"], rec["iou"] = report["threshold"], report["iou"]
    rec["metrics"] = {p: report[p] for p in ("easy", "crowded", "noisy") if p in report}
    rec["goals"] = {
        p: {
            "target": g,
            "f1": report[p]["peaks+nms"]["f1"],
            "count_error": report[p]["peaks+nms"]["count_error"],
            "met": report[p]["peaks+nms"]["f1"] >= g["f1"] and report[p]["peaks+nms"]["count_error"] < g["count_error"],
        }
        for p, g in GOALS.items()
    }
    rec["trained_within_15_min"] = rec["train_s"] <= 900
    rec["load_after"] = load()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for png in ev.glob("overlay_*.png"):
        if not png.name.endswith("_raw.png") or "crowded" in png.name:  # keep the committed PNGs few
            shutil.copy(png, RESULTS / f"{name}_{png.name}")
    (RESULTS / f"{name}.json").write_text(json.dumps(rec, indent=1))
    print(json.dumps(rec["goals"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
