"""How deepops writes what it measured: JSON files and durations, the same way for every command.

* :func:`write_json` -- indented JSON (anything not JSON-able, such as a path or a dtype, written as its ``str``),
  its folder created, written to a temporary file first and then renamed, so a reader never sees half a file;
* :func:`format_seconds` -- a duration for people: ``0.42 s``, ``12.3 s``, ``5 min 21 s``, ``1 h 02 min``;
* :func:`format_time` -- a measured time for tables: ``1.23 s``, ``4.56 ms``, ``7.8 µs``;
* :func:`replace_section` -- a generated section of a text file (the README's) between its two marker lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def format_time(seconds: float, width: int = 0) -> str:
    """A measured time in the unit that suits it: ``1.23 s``, ``4.56 ms``, ``7.8 µs`` (numbers right-aligned in
    ``width`` characters, for tables)."""
    s = float(seconds)
    if s >= 1:
        return f"{s:{width}.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:{width}.2f} ms"
    return f"{s * 1e6:{width}.1f} µs"


def format_seconds(seconds: float) -> str:
    s = float(seconds)
    if s < 1:
        return f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        m, r = divmod(int(round(s)), 60)
        return f"{m} min {r:02d} s"
    h, r = divmod(int(round(s)) // 60, 60)
    return f"{h} h {r:02d} min"


def replace_section(path: str | os.PathLike, start: str, end: str, section: str, check: bool = False) -> bool:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) in place of the file's text from ``start``
    to ``end``; with ``check`` only compare.  Returns True when the file already held it."""
    text = Path(path).read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path} has no markers for its generated section ({start!r} ... {end!r})")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = head + section + tail
    if new == text:
        return True
    if not check:
        Path(path).write_text(new)
    return False
