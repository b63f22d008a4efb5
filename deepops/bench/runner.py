"""``deepops bench``: run the registered workloads on every backend present and print the comparison."""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import platform
import sys
import time

import torch

from .._report import format_time
from . import core


def load_cases() -> None:
    """Import every ``deepops.bench.cases_*`` module (each registers its workloads)."""
    pkg = importlib.import_module("deepops.bench")
    for m in pkgutil.iter_modules(pkg.__path__):
        if m.name.startswith("cases_"):
            importlib.import_module(f"deepops.bench.{m.name}")


def machine() -> dict:
    import deepops

    d = {k: v for k, v in deepops.info().items() if k != "ops"}
    d["platform"] = platform.platform()
    d["cpu_model"] = _cpu_model()
    d["cores"] = os.cpu_count()
    d["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return d


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def available_devices(requested: list[str] | None) -> list[str]:
    devs = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if requested:
        missing = [d for d in requested if d not in devs]
        if missing:
            print(f"deepops bench: device(s) {', '.join(missing)} not available here; skipped", file=sys.stderr)
        devs = [d for d in devs if d in requested]
    return devs


def run(
    quick: bool = False,
    ops: list[str] | None = None,
    devices: list[str] | None = None,
    dtypes: list[str] | None = None,
    progress: bool | None = None,
    budget_s: float | None = None,
) -> dict:
    """Run the selected workloads; returns the JSON-ready report (machine, ceilings, results)."""
    load_cases()
    devs = available_devices(devices)
    want_dtypes = [getattr(torch, d) for d in dtypes] if dtypes else None
    jobs = []
    for w in core.REGISTRY:
        if ops and w.op not in ops:
            continue
        if quick and not w.quick:
            continue
        for dev in devs:
            if dev not in w.devices:
                continue
            for dt in w.dtypes:
                if want_dtypes is not None and dt not in want_dtypes:
                    continue
                if dev == "cpu" and dt in (torch.float16, torch.bfloat16) and not want_dtypes:
                    continue  # half precision is a GPU format; on the CPU only when asked for
                jobs.append((w, dev, dt))
    if budget_s is None:
        budget_s = 0.3 if quick else 1.5
    from tqdm.auto import tqdm

    # progress None: tqdm's choice (a bar on a terminal or in a notebook, nothing in logs)
    bar = tqdm(total=len(jobs), disable=None if progress is None else not progress, leave=False, dynamic_ncols=True)
    ceilings = {}
    for dev in devs:
        d = torch.device(dev)
        ceilings[dev] = {"copy_GBps": core.copy_bandwidth(d), "matmul_fp32_TFLOPs": core.matmul_throughput(d, torch.float32)}
        if dev == "cuda":
            ceilings[dev]["matmul_fp16_TFLOPs"] = core.matmul_throughput(d, torch.float16)
    results: list[core.Result] = []
    for w, dev, dt in jobs:
        bar.set_postfix_str(f"{w.name} {dev} {str(dt)[6:]}")
        results.extend(_run_one(w, torch.device(dev), dt, budget_s))
        bar.update(1)
    bar.close()
    return {
        "machine": machine(),
        "quick": quick,
        "ceilings": ceilings,
        "results": [dataclasses.asdict(r) for r in results],
    }


def _run_one(w: core.Workload, device: torch.device, dtype: torch.dtype, budget_s: float) -> list[core.Result]:
    gen = torch.Generator().manual_seed(1234)
    impls = dict(w.impls)
    if w.skip:
        for name in list(impls):
            if w.skip(w.name, name, device, dtype):
                del impls[name]
    input_sets = [w.make_inputs(device, dtype, gen) for _ in range(3)]
    timed = core.measure(impls, input_sets, device, budget_s=budget_s)
    out = []
    for name, (ts, warm) in timed.items():
        med, iqr = core.summarise(ts)
        r = core.Result(w.op, w.name, name, device.type, str(dtype).removeprefix("torch."), med, iqr, len(ts), warm)
        if w.bytes:
            r.gbps = w.bytes(input_sets[0]) / med / 1e9
        if w.flops:
            r.tflops = w.flops(input_sets[0]) / med / 1e12
        if w.items:
            r.items_per_s = w.items(input_sets[0]) / med
        out.append(r)
    return out


# ------------------------------------------------------------------------------------------------------- output


def _fmt(seconds: float) -> str:
    return format_time(seconds, width=7)


def table(report: dict) -> str:
    """The terminal table: one row per (workload, device, dtype), deepops against each peer on the same device."""
    rows = report["results"]
    ceil = report["ceilings"]
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["op"], r["workload"], r["device"], r["dtype"]), {})[r["impl"]] = r
    head = f"{'workload':<34} {'dev':<4} {'dtype':<8} {'deepops':>10} {'spread':>6}  {'peer':>10}  {'speed-up':>10}  {'of limit':>9}"
    lines = [head, "-" * len(head)]
    for (op, wl, dev, dt), impls in groups.items():
        d = impls.get("deepops")
        if d is None:
            continue
        peers = [(n, r) for n, r in impls.items() if n != "deepops"]
        limit = ""
        if d.get("gbps") is not None and dev in ceil:
            limit = f"{100 * d['gbps'] / ceil[dev]['copy_GBps']:6.0f}% BW"
        elif d.get("tflops") is not None and dev in ceil:
            key = "matmul_fp16_TFLOPs" if dt in ("float16", "bfloat16") and dev == "cuda" else "matmul_fp32_TFLOPs"
            limit = f"{100 * d['tflops'] / ceil[dev][key]:5.0f}% MM"
        elif d.get("items_per_s") is not None:
            limit = f"{d['items_per_s']:.0f} img/s"
        first = True
        for n, p in peers or [("-", None)]:
            limit = (call_overhead(d, p) or limit) if p else limit
            ratio = f"{p['median_s'] / d['median_s']:9.2f}x" if p else ""
            ptime = _fmt(p["median_s"]) if p else ""
            left = (
                f"{wl[:34]:<34} {dev:<4} {dt:<8} {_fmt(d['median_s']):>10} {100 * d['iqr_rel']:5.0f}%"
                if first
                else " " * 67
            )
            lines.append(f"{left}  {ptime:>10}  {ratio:>10} vs {n:<11} {limit if first or op == 'overhead' else ''}")
            first = False
    gpu_cpu = gpu_vs_cpu(report)
    if gpu_cpu:
        lines.append("")
        lines.append("deepops on the GPU against deepops on the CPU (same workload, float32):")
        for wl, s in gpu_cpu.items():
            lines.append(f"  {wl:<40} {s:10.1f}x faster on the GPU")
    warm: dict[tuple[str, str], float] = {}
    for r in rows:
        if r["impl"] == "deepops":
            key = (r["op"], r["device"])
            warm[key] = max(warm.get(key, 0.0), r["warmup_s"])
    if warm:
        lines.append("")
        lines.append(
            "first calls, excluded from the times above (Numba compilation or cache load, extension load): "
            + ", ".join(f"{op} on {dev} {t:.2f} s" for (op, dev), t in warm.items())
        )
    lines.append("")
    for dev, c in ceil.items():
        extra = ", ".join(f"{k} {v:.1f}" for k, v in c.items())
        lines.append(f"ceilings measured on {dev}: {extra}")
    lines.append("speed-up = peer time / deepops time (above 1: deepops is faster); spread = interquartile range / median")
    return "\n".join(lines)


def call_overhead(ours: dict, peer: dict) -> str | None:
    """For the tiny-call rows (op "overhead"): how much longer a deepops call takes than the peer's, in us."""
    if ours.get("op") != "overhead":
        return None
    return f"{(ours['median_s'] - peer['median_s']) * 1e6:+.1f} us per call"


def gpu_vs_cpu(report: dict) -> dict[str, float]:
    t = {}
    for r in report["results"]:
        if r["impl"] == "deepops" and r["dtype"] == "float32":
            t.setdefault(r["workload"], {})[r["device"]] = r["median_s"]
    return {wl: d["cpu"] / d["cuda"] for wl, d in t.items() if "cpu" in d and "cuda" in d}


def plot(report: dict, path: str) -> bool:
    """A PNG bar chart of deepops' speed-up over each peer (log scale). Returns False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("deepops bench: matplotlib is not installed; no plot written (pip install matplotlib)", file=sys.stderr)
        return False
    labels, values = [], []
    groups: dict[tuple, dict[str, dict]] = {}
    for r in report["results"]:
        groups.setdefault((r["workload"], r["device"], r["dtype"]), {})[r["impl"]] = r
    for (wl, dev, dt), impls in groups.items():
        d = impls.get("deepops")
        for n, p in impls.items():
            if d is not None and n != "deepops":
                labels.append(f"{wl} [{dev} {dt}] vs {n}")
                values.append(p["median_s"] / d["median_s"])
    for wl, s in gpu_vs_cpu(report).items():
        labels.append(f"{wl}: GPU vs CPU")
        values.append(s)
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(labels) + 1.5))
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("speed-up of deepops (peer time / deepops time, log scale)")
    ax.invert_yaxis()
    ax.set_title(f"deepops bench on {report['machine'].get('cpu_model', '')} / {report['machine'].get('gpu') or 'no GPU'}", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
