"""Peak memory of a code block: CUDA allocator peak on GPU, sampled resident set size on CPU."""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

import torch

__all__ = ["PeakMemory"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        import resource

        return (
            int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        )  # peak so far (Linux: KiB)


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.megabytes``: the process's largest resident
    set size seen while the block ran (sampled every ``interval`` seconds) or, on CUDA, the
    allocator's peak."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self.peak = _rss_bytes()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.device == "cuda":
            self.peak = int(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())

    @property
    def megabytes(self) -> float:
        return self.peak / 2**20
