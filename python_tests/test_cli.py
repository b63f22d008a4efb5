"""The command line: ``deepops info``, ``python -m deepops`` and ``deepops bench``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import pytest
import torch

from deepops.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["torch"] == torch.__version__ and rows["numba"] == numba.__version__
    assert rows["cuda_extension_loaded"] == str("deepops._C" in sys.modules)
    registered = {n.removeprefix("deepops::") for n in torch._C._dispatch_get_all_op_names() if n.startswith("deepops::")}
    assert set(rows["ops"].split(", ")) == registered


def _rows(info_out: str) -> dict[str, str]:
    """``deepops info``'s lines as {key: value}."""
    return dict(line.split(None, 1) for line in info_out.splitlines())


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "deepops", "info"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = _rows(r.stdout)
    assert rows["torch"] == torch.__version__
    emulated = os.environ.get("DEEPOPS_CPU_BACKEND") == "cuda-emu"
    assert rows["backend_cpu"].startswith("deepops CUDA kernels, emulated" if emulated else "numba")


def test_bench_quick_relu(tmp_path, capsys):
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    args = ["bench", "--quick", "--ops", "relu", "--device", "cpu", "--budget", "0.05", "--json", str(js)]
    try:
        import matplotlib  # noqa: F401

        args += ["--plot", str(png)]
    except ImportError:
        png = None
    assert main(args) == 0
    out = capsys.readouterr().out
    report = json.loads(js.read_text())
    assert report["quick"] is True
    assert report["machine"]["cores"] == os.cpu_count() and report["machine"]["torch"] == torch.__version__
    assert report["ceilings"]["cpu"]["copy_GBps"] > 0
    # --quick, --ops relu, cpu: the one quick ReLU workload, float32 (16-bit runs on the CPU only when asked for)
    assert sorted(r["impl"] for r in report["results"]) == ["deepops", "torch"]
    rows = {r["impl"]: r for r in report["results"]}
    for r in rows.values():
        assert (r["op"], r["workload"], r["device"], r["dtype"]) == ("relu", "relu 64x256x56x56", "cpu", "float32")
        assert r["median_s"] > 0 and r["reps"] >= 5
        # ReLU reads and writes each float32 element once
        assert r["gbps"] == pytest.approx(2 * 64 * 256 * 56 * 56 * 4 / r["median_s"] / 1e9)
    speedup = rows["torch"]["median_s"] / rows["deepops"]["median_s"]
    assert "relu 64x256x56x56" in out and f"{speedup:9.2f}x vs torch" in out
    if png is not None:
        assert png.stat().st_size > 1000


def test_bench_overhead_rows_give_the_extra_time_per_call(tmp_path, capsys):
    # the tiny-call rows: every op against torch, the difference per call in the terminal table and the README's
    js = tmp_path / "o.json"
    assert main(["bench", "--quick", "--ops", "overhead", "--device", "cpu", "--budget", "0.02", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    report = json.loads(js.read_text())
    names = {r["workload"] for r in report["results"]}
    for op in ("relu", "leaky_relu", "conv2d", "conv_transpose2d", "max_pool2d"):
        assert any(n.startswith(f"tiny {op} ") for n in names), op
    assert any("fwd+bwd" in n for n in names)
    from deepops.bench.report import section

    rows = {(r["workload"], r["impl"]): r for r in report["results"]}
    wl = "tiny relu 1x1x4x4"
    extra = (rows[wl, "deepops"]["median_s"] - rows[wl, "torch"]["median_s"]) * 1e6
    assert f"{extra:+.1f} us per call" in out
    assert f"| {wl} | cpu | float32 |" in section([("r.json", report)]) and f"{extra:+.1f} us per call |" in section(
        [("r.json", report)]
    )


def test_bench_quick_times_both_convolutions_on_the_cpu():
    from deepops.bench import core, runner

    runner.load_cases()
    quick = [w.name for w in core.REGISTRY if w.quick and "cpu" in w.devices and torch.float32 in w.dtypes]
    for op in ("conv2d", "conv_transpose2d"):
        assert any(f" {op} fwd " in f" {n} " for n in quick) and any(f" {op} fwd+bwd " in f" {n} " for n in quick), op


def test_bench_rejects_unknown_option():
    with pytest.raises(SystemExit):
        main(["bench", "--no-such-option"])
