"""A small dependency-free progress bar, used by ``deepops bench`` and the training commands."""

from __future__ import annotations

import sys
import time


class Progress:
    """One line on stderr, redrawn in place: ``[#####.....] 12/40 3.1s  loss 0.41 acc 0.93``.

    Drawn only when stderr is a terminal (or ``enabled=True``), so logs and CI output stay clean; ``close()`` ends the
    line (or, when not drawing, prints the final state once if ``summary`` is set).
    """

    def __init__(self, total: int, label: str = "", enabled: bool | None = None, width: int = 30):
        self.total, self.label, self.width = max(int(total), 1), label, width
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.done, self.t0, self.text = 0, time.perf_counter(), ""

    def update(self, n: int = 1, text: str = "") -> None:
        self.done = min(self.done + n, self.total)
        self.text = text
        if self.enabled:
            fill = int(self.width * self.done / self.total)
            el = time.perf_counter() - self.t0
            line = f"\r{self.label}[{'#' * fill}{'.' * (self.width - fill)}] {self.done}/{self.total} {el:6.1f}s {text}"
            sys.stderr.write(line[:160].ljust(120))
            sys.stderr.flush()

    def close(self, summary: bool = False) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
        elif summary:
            el = time.perf_counter() - self.t0
            print(f"{self.label}{self.done}/{self.total} {el:.1f}s {self.text}", file=sys.stderr)
