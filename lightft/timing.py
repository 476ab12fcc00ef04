"""The measurement core: one timer and one peak-memory probe, used by every chapter.

Chapters: "Lightweight strategies, measured" (throughput, MFU), "Background" (latency), "Applications"
(scoring speed), "Attention" (cost of the formula). Every timed number in the book goes through
:func:`time_calls`; every peak-memory number through :class:`PeakMemory`.

* :func:`time_calls` runs a callable ``warmup`` times untimed, then ``repeats`` times timed, and
  returns the seconds of each timed call (synchronising the GPU around each one): the caller takes the
  median (robust to a noisy machine) or the best (the ceiling).
* :class:`PeakMemory` is the peak memory during a ``with`` block: the resident set size (RSS) sampled
  by a background thread on a CPU (it includes Python, the libraries and the weights: compare
  settings by their differences), ``torch.cuda.max_memory_allocated`` on a GPU.
MFU (model FLOPs utilisation) is computed in one place, :func:`lightft.measure.model_flops_utilisation`.
"""

from __future__ import annotations

import contextlib
import ctypes
import statistics
import threading
import time
from typing import Callable

import torch

from lightft import checks


def sync(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work (a no-op on a CPU): a GPU timer must not stop before the work does."""
    if torch.cuda.is_available() and torch.device(device or "cuda").type == "cuda":
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1,
               device: torch.device | str | None = None) -> list[float]:
    """Seconds taken by each of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    checks.integer("repeats", repeats)
    checks.integer("warmup", warmup, 0)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1,
                   device: torch.device | str | None = None) -> float:
    """The median of :func:`time_calls`: one number per setting, robust to a noisy machine."""
    return statistics.median(time_calls(fn, repeats=repeats, warmup=warmup, device=device))


class PeakMemory:
    """Peak memory in bytes during a ``with`` block (``.peak``; ``.start`` is the level on entry).

    On a CPU: RSS sampled every ``interval`` seconds by a thread. On a GPU: CUDA's allocator statistics.
    """

    def __init__(self, device: torch.device | str | None = None, interval: float = 0.002):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.interval = interval
        self.peak = self.start = 0
        self._stop = threading.Event()

    @property
    def increase(self) -> int:
        """Bytes above the level at entry."""
        return max(0, self.peak - self.start)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = self.peak = torch.cuda.memory_allocated(self.device)
            return self
        import psutil

        with contextlib.suppress(OSError, AttributeError):  # give freed heap pages back first (glibc)
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        process = psutil.Process()
        self.start = self.peak = process.memory_info().rss

        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, process.memory_info().rss)
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return False
        self._stop.set()
        self._thread.join()
        import psutil

        self.peak = max(self.peak, psutil.Process().memory_info().rss)
        return False

