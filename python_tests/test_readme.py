"""The README stays true: its quick-start test command is the one CI runs, and its performance section is the one
generated from the committed benchmark results."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*p):
    with open(os.path.join(ROOT, *p)) as f:
        return f.read()


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    readme = _read("README.md")
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(commands) == 2, commands
    bench, tests = commands
    assert "deepops bench" in bench and "pytest" in tests
    assert tests in _read(".ci", "run"), "the README's test command must be the one .ci/run runs"


def test_performance_section_matches_committed_results():
    from deepops.bench import report

    assert report.update_readme(ROOT, check=True), "run: python -m deepops.bench.report"


def test_performance_numbers_come_from_files():
    readme = _read("README.md")
    section = readme.split("<!-- perf:start", 1)[1].split("<!-- perf:end -->", 1)[0]
    for path in re.findall(r"\(benchmarks/results/[^)]+\)", section):
        assert os.path.isfile(os.path.join(ROOT, path.strip("()"))), path
