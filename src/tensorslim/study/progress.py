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
