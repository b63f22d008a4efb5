"""The command line: ``deepops info``, ``python -m deepops`` and ``deepops bench``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deepops.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "numba" in out and "cuda_extension_loaded" in out and "relu" in out


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "deepops", "info"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "backend_cpu" in r.stdout


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
    assert "relu 64x256x56x56" in out and "vs torch" in out
    report = json.loads(js.read_text())
    assert report["machine"]["cores"] >= 1 and "copy_GBps" in report["ceilings"]["cpu"]
    rows = report["results"]
    assert {r["impl"] for r in rows} == {"deepops", "torch"}
    assert all(r["median_s"] > 0 and r["reps"] >= 5 and r["gbps"] > 0 for r in rows)
    if png is not None:
        assert png.stat().st_size > 1000


def test_bench_rejects_unknown_option():
    with pytest.raises(SystemExit):
        main(["bench", "--no-such-option"])
