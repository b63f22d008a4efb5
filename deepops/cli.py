"""The ``deepops`` command line (``python -m deepops`` is the same): ``deepops info`` and ``deepops bench`` are
defined here; ``train``, ``predict``, ``sample``, ``count`` and ``filter`` are the plug-ins of ``deepops.commands``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="deepops", description="deepops: CUDA and Numba kernels for CNN ops")
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("info", help="versions, build, GPU, and which backend each device uses")
    b = sub.add_parser("bench", help="time deepops against its peers on every backend present")
    b.add_argument("--quick", action="store_true", help="a short run (under a minute on 2 CPU cores)")
    b.add_argument("--ops", type=_csv, help="comma-separated op families (e.g. relu,conv2d); default: all")
    b.add_argument("--device", type=_csv, help="cpu, cuda or both (default: every device present)")
    b.add_argument("--dtype", type=_csv, help="float32, float16, bfloat16, float64 (default: each workload's own)")
    b.add_argument("--json", metavar="PATH", help="write the full report (machine, ceilings, results) as JSON")
    b.add_argument("--plot", metavar="PATH", help="write a PNG chart of the speed-ups (needs matplotlib)")
    b.add_argument("--budget", type=float, help="seconds of timing per workload (default 0.3 quick, 1.5 full)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    parsers = {
        "top": sub,
        "train": sub.add_parser("train", help="train a model").add_subparsers(dest="what", metavar="MODEL"),
        "predict": sub.add_parser("predict", help="predict with a trained model").add_subparsers(dest="what", metavar="MODEL"),
        "sample": sub.add_parser("sample", help="sample from a generative model").add_subparsers(dest="what", metavar="MODEL"),
    }
    from . import commands

    for m in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"deepops.commands.{m.name}").register(parsers)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    args.argv = argv  # the command as given (training records it in metrics.json)
    if getattr(args, "func", None) is not None:
        return int(args.func(args) or 0)

    if args.cmd in (None, "info"):
        import deepops
        from deepops._info import format_info

        print(format_info(deepops.info()))
        return 0
    if args.cmd == "bench":
        from deepops.bench import runner

        report = runner.run(
            quick=args.quick,
            ops=args.ops,
            devices=args.device,
            dtypes=args.dtype,
            progress=False if args.no_progress else None,
            budget_s=args.budget,
        )
        print(runner.table(report))
        if args.json:
            from deepops._report import write_json

            write_json(args.json, report)
            print(f"report written to {args.json}")
        if args.plot and runner.plot(report, args.plot):
            print(f"chart written to {args.plot}")
        return 0
    if args.cmd in parsers:
        p.parse_args([args.cmd, "--help"])
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
