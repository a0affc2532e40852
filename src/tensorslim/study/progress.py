"""Progress of a long loop of trials: a line at most every ``interval`` seconds, with an ETA.

Used as an Optuna callback (``study.optimize(..., callbacks=[Ticker(n, "trials", log)])``) so that a run whose
output goes to a log file, CI or a pipe shows that it is alive and how long it has left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

INTERVAL = 30.0  # seconds between lines


class Ticker:
    """Counts finished items; logs ``trials: 12/40 done, ETA 95 s`` when ``interval`` has passed, and at the end."""

    def __init__(self, total: int, what: str, log: Callable[[str], None] | None, interval: float | None = None):
        self.total, self.what, self.log = total, what, log
        self.interval = INTERVAL if interval is None else interval
        self.done = 0
        self.start = self.last = time.perf_counter()

    def __call__(self, *_: Any) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.log is None or (now - self.last < self.interval and self.done < self.total):
            return
        self.last = now
        eta = (now - self.start) / self.done * max(0, self.total - self.done)
        self.log(f"{self.what}: {self.done}/{self.total} done, {now - self.start:.0f} s so far, ETA {eta:.0f} s")


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int | None) -> float | None:
    """Seconds from ``"90s"``, ``"30m"``, ``"1.5h"`` or a number of seconds; None stays None.

    Raises ValueError with one line for anything else (a missing or unknown unit, zero or negative)."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise ValueError(f"a time budget must be like 90s, 30m or 2h, not {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        raw = str(text).strip().lower()
        unit = raw[-1:] if raw[-1:] in _UNITS else None
        try:
            seconds = float(raw[:-1] if unit else raw) * _UNITS[unit or "s"]
        except ValueError:
            raise ValueError(f"a time budget must be like 90s, 30m or 2h (units s, m, h), not {text!r}") from None
        if unit is None and raw:
            raise ValueError(f"a time budget needs a unit (s, m or h): {text!r}")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"a time budget must be positive and finite, not {text!r}")
    return seconds


class Deadline:
    """A wall-clock budget started at construction; ``None`` seconds never expires.

    ``expired()`` is checked between trials; ``stop_callback`` is an Optuna callback that stops the study once
    the budget is spent (the trial that is running finishes first, so the run ends valid)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.start = time.perf_counter()
        self.hit = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float | None:
        return None if self.seconds is None else max(0.0, self.seconds - self.elapsed())

    def expired(self) -> bool:
        if self.seconds is not None and self.elapsed() >= self.seconds:
            self.hit = True
        return self.hit

    def stop_callback(self, study: Any, _trial: Any) -> None:
        if self.expired():
            study.stop()


def format_seconds(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``3.1 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
