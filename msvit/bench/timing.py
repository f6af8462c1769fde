"""Latency measurement: warm-up, then a timed loop; percentiles with numpy; peak memory."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, ContextManager

import numpy as np


@dataclass
class LatencyStats:
    batch: int
    iters: int  # timed runs actually made
    warmup: int
    seconds: float  # wall time of the timed loop
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput: float  # images/s = batch / mean latency

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def stats_from_ms(ms: np.ndarray | list[float], batch: int, warmup: int, seconds: float) -> LatencyStats:
    a = np.asarray(ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])  # linear interpolation: monotone by construction
    mean = float(a.mean())
    return LatencyStats(batch=batch, iters=int(a.size), warmup=warmup, seconds=float(seconds), p50_ms=float(p50),
                        p90_ms=float(p90), p99_ms=float(p99), mean_ms=mean, std_ms=float(a.std()),
                        min_ms=float(a.min()), max_ms=float(a.max()),
                        throughput=float(batch * 1000.0 / mean) if mean > 0 else float("inf"))


def measure(fn: Callable[[np.ndarray], Any], x: np.ndarray, warmup: int = 10, iters: int = 50,
            min_time: float = 0.0, during: ContextManager | None = None,
            tick: Callable[[], None] | None = None) -> LatencyStats:
    """Time ``fn(x)``: ``warmup`` untimed calls, then at least ``iters`` timed calls and,
    with ``min_time`` > 0, keep going until that many seconds have passed (both hold).

    ``fn`` must block until its result is ready (GPU runners synchronise); ``during`` wraps
    the timed loop only (e.g. a power sampler), ``tick`` is called after each timed run.
    """
    if iters < 1:
        raise ValueError("iters must be >= 1")
    for _ in range(max(0, warmup)):
        fn(x)
    ms: list[float] = []
    clock = time.perf_counter
    with during if during is not None else contextlib.nullcontext():
        t_start = clock()
        while len(ms) < iters or (clock() - t_start) < min_time:
            t0 = clock()
            fn(x)
            ms.append((clock() - t0) * 1e3)
            if tick:
                tick()
        seconds = clock() - t_start
    return stats_from_ms(ms, int(x.shape[0]), max(0, warmup), seconds)


# ---------------------------------------------------------------- peak memory

def _vm_hwm_kb() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    # Linux >= 4.0: writing 5 to clear_refs resets the peak-RSS watermark of this process
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_bytes() -> int:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss


class PeakMemory:
    """Peak RSS growth of this process over a block, in MB.

    Preferred: Linux VmHWM reset through /proc/self/clear_refs (exact peak, kernel-tracked);
    fallback: psutil RSS sampled every 5 ms in a thread (can miss short spikes).
    ``method`` names which one produced ``peak_mb``.
    """

    def __init__(self) -> None:
        self.peak_mb: float | None = None
        self.method: str = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = 0
        self._peak = 0

    def __enter__(self) -> "PeakMemory":
        if _vm_hwm_kb() is not None and _reset_hwm():
            self.method = "rss_hwm_delta"  # VmHWM after clear_refs minus RSS at start
            self._base = _rss_bytes() if _psutil_ok() else _vm_hwm_kb() * 1024
            return self
        if _psutil_ok():
            self.method = "psutil_rss_sampled_delta"
            self._base = self._peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            self.method = "unavailable"
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        if self.method == "rss_hwm_delta":
            self.peak_mb = max(0, (_vm_hwm_kb() or 0) * 1024 - self._base) / 1e6
        elif self.method == "psutil_rss_sampled_delta":
            self._stop.set()
            if self._thread:
                self._thread.join()
            self._peak = max(self._peak, _rss_bytes())
            self.peak_mb = max(0, self._peak - self._base) / 1e6


def _psutil_ok() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True
