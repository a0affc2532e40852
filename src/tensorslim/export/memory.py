"""The resident set size of this process, read once or sampled in the background (Linux ``/proc/self/statm``).

There is no API for the peak memory of an ONNX Runtime CPU session, so benchmarks measure both runtimes the same
way, from the RSS: :func:`rss_bytes` reads it once, :class:`PeakRss` samples it every millisecond in a thread
while a block runs. Both give None where ``/proc`` is not available.
"""

from __future__ import annotations

import os
import threading


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux ``/proc/self/statm``), or None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakRss:
    """Sample the RSS every ``interval`` seconds in a background thread while the block runs.

    ``peak`` is the highest RSS seen (bytes, None where unavailable): the whole process, so it includes what
    the block allocated (session, weights, activations, allocator arenas) on top of what was resident before.
    :meth:`sample` reads the RSS once more and returns the peak so far, e.g. at the end of one step.
    """

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        rss = rss_bytes()
        if rss is not None:
            self.peak = rss if self.peak is None else max(self.peak, rss)

    def sample(self) -> int | None:
        """Sample now; the peak so far."""
        self._sample()
        return self.peak

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
