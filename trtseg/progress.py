"""Progress for slow command-line steps (engine builds, calibration, sample rendering).

On a terminal it redraws one line; in logs (no TTY) it writes a line every few percent so CI and
`ray logs` stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A minimal progress display: ``with Progress("building", total=100) as p: p.update(5)``."""

    def __init__(self, label: str, total: float | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0.0
        self.stream = stream or sys.stderr
        self._tty = self.stream.isatty()
        self._started = time.monotonic()
        self._last_step = -1

    def __enter__(self) -> Progress:
        self._write(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._write(force=True, final=True)

    def update(self, advance: float = 1.0, note: str = "") -> None:
        self.done += advance
        self._write(note=note)

    def set(self, done: float, total: float | None = None, note: str = "") -> None:
        self.done = done
        if total is not None:
            self.total = total
        self._write(note=note)

    def _write(self, note: str = "", force: bool = False, final: bool = False) -> None:
        elapsed = time.monotonic() - self._started
        if self.total:
            share = min(self.done / self.total, 1.0)
            step = int(share * 20)
            if not (force or self._tty or step != self._last_step):
                return
            self._last_step = step
            bar = "#" * step + "-" * (20 - step)
            text = f"{self.label} [{bar}] {share:6.1%} {elapsed:6.1f}s {note}"
        else:
            text = f"{self.label} {self.done:g} {elapsed:6.1f}s {note}"
        end = "\n" if (final or not self._tty) else "\r"
        self.stream.write(text.rstrip() + end)
        self.stream.flush()
