"""Latency measurement: several runners timed round-robin in blocks (so every row sees the
same machine state), percentiles with numpy, block-to-block spread, the CPU time other
processes took meanwhile, and peak memory."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager

import numpy as np

if TYPE_CHECKING:
    from .plan import Candidate


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


@dataclass
class Interleaved:
    """One runner's share of an interleaved run."""

    ms: list[float]  # every timed run
    block_ms: list[float]  # median of each block, in round order (index r = round r)

    @property
    def spread_pct(self) -> float:
        """Interquartile range of the block medians / their median: how much the machine moved
        under this row. Quartiles, not max - min: one block hit by a cron job or a page-cache
        flush should not call a whole run noisy (max - min flagged idle runs at 39-62%)."""
        b = np.asarray(self.block_ms)
        if b.size < 2:
            return 0.0
        q1, med, q3 = np.percentile(b, [25, 50, 75])
        return float((q3 - q1) / med * 100.0)


def interleaved(fns: list[Callable[[], Any]], iters: int = 50, warmup: int = 10, block: int = 10,
                min_time: float = 0.0, rewarm: int = 2, tick: Callable[[int], None] | None = None,
                during: list[Callable[[], ContextManager]] | None = None) -> list[Interleaved]:
    """Time every ``fns[i]()`` in blocks of ``block`` runs, round-robin, the order rotating each
    round, until each has at least ``iters`` runs and ``min_time`` seconds have passed.

    Back-to-back measurements minutes apart on a shared VM differ by more than the effects
    being measured; interleaving puts every runner under the same load, so ratios between
    runners stay meaningful even when absolute times do not. ``rewarm`` untimed runs before
    each block refill caches the other runners evicted. ``during[i]`` wraps runner i's blocks
    (e.g. a power sampler); ``tick(i)`` is called after each timed run of runner i.
    """
    if iters < 1 or block < 1:
        raise ValueError("iters and block must be >= 1")
    for f in fns:
        for _ in range(max(0, warmup)):
            f()
    out = [Interleaved([], []) for _ in fns]
    clock = time.perf_counter
    t_start, r = clock(), 0
    while min(len(o.ms) for o in out) < iters or clock() - t_start < min_time:
        order = list(range(len(fns)))
        order = order[r % len(fns):] + order[:r % len(fns)]
        for i in order:
            f = fns[i]
            for _ in range(rewarm):
                f()
            ctx = during[i]() if during and during[i] else contextlib.nullcontext()
            blk = []
            with ctx:
                for _ in range(block):
                    t0 = clock()
                    f()
                    blk.append((clock() - t0) * 1e3)
                    if tick:
                        tick(i)
            out[i].ms.extend(blk)
            out[i].block_ms.append(float(np.median(blk)))
        r += 1
    return out


def paired_speedup(base: Interleaved, other: Interleaved) -> float:
    """Median over rounds of base block / other block: each ratio compares two blocks timed
    next to each other, so slow drifts of the machine cancel."""
    n = min(len(base.block_ms), len(other.block_ms))
    return float(np.median(np.asarray(base.block_ms[:n]) / np.asarray(other.block_ms[:n])))


class ForeignLoad:
    """CPU time other processes used while a block ran, as a share of all CPUs (psutil):
    the direct evidence that a timing was taken on a busy machine."""

    def __init__(self) -> None:
        self.pct: float | None = None

    def __enter__(self) -> "ForeignLoad":
        if _psutil_ok():
            import psutil

            self._sys, self._own, self._t = psutil.cpu_times(), psutil.Process().cpu_times(), time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if not _psutil_ok():
            return
        import psutil

        s, o, wall = psutil.cpu_times(), psutil.Process().cpu_times(), time.perf_counter() - self._t
        busy = (s.user + s.system + getattr(s, "nice", 0.0)) - (self._sys.user + self._sys.system
                                                                  + getattr(self._sys, "nice", 0.0))
        own = (o.user + o.system + o.children_user + o.children_system) - (
            self._own.user + self._own.system + self._own.children_user + self._own.children_system)
        cpus = psutil.cpu_count() or 1
        if wall > 0:
            self.pct = max(0.0, (busy - own) / (wall * cpus) * 100.0)


def busy_cores(seconds: float = 1.0) -> float | None:
    """How many cores other processes keep busy, sampled over ``seconds`` of this process
    sleeping (None without psutil)."""
    if not _psutil_ok():
        return None
    import psutil

    with ForeignLoad() as load:
        time.sleep(seconds)
    return None if load.pct is None else load.pct / 100.0 * (psutil.cpu_count() or 1)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask; os.cpu_count() elsewhere)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def free_threads(usable: int, busy: float | None) -> int:
    """Threads that fit on the cores nobody else is using: a thread pool wider than that shares
    a core with a foreign process, and its barriers then wait a whole time slice (2-core VM,
    one core spun by another process: OpenVINO 20 -> 100 ms at 2 threads, 27 ms at 1), which
    makes runtimes' ratios depend on how each pool waits rather than on the work."""
    if busy is None:
        return usable
    return max(1, usable - int(round(busy)))


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


# ---------------------------------------------------------------- the benchmark's rows, interleaved

#: a row whose block medians differ by more than this, or other processes taking more than
#: NOISY_FOREIGN_PCT of the CPUs, makes the report say the timings cannot be trusted
NOISY_SPREAD_PCT = 25.0
NOISY_FOREIGN_PCT = 15.0


def time_rows(cands: list[Candidate], x1: np.ndarray, xn: np.ndarray | None, iters: int, warmup: int,
               min_time: float, block: int, progress: bool, sampler_factory) -> dict[str, Any]:
    """Every runnable row (batch 1, then batch N) round-robin in one interleaved run."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import jetson

    entries: list[tuple[Candidate, int]] = []
    for c in cands:
        if c.row.status != "ok":  # unavailable, or an unreadable artifact: nothing to time
            continue
        if c.s1 is not None:
            entries.append((c, 1))
        if xn is not None and c.sn is not None:
            entries.append((c, len(xn)))
    if not entries:
        return {}
    fns = [(lambda s=(c.s1 if n == 1 else c.sn), x=(x1 if n == 1 else xn): s.run(x)) for c, n in entries]
    samplers = [sampler_factory() if sampler_factory and n == 1 else None for c, n in entries]
    power: list[list[float]] = [[] for _ in entries]

    def during(i):
        sm = samplers[i]
        if sm is None:
            return None

        class _Acc:
            def __enter__(self):
                sm.__enter__()

            def __exit__(self, *exc):
                sm.__exit__(*exc)
                power[i].extend(sm.samples_mw)
        return _Acc

    prog = Progress(TextColumn("timing, interleaved"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), disable=not progress, transient=True)
    with prog, ForeignLoad() as load:
        task = prog.add_task("timing", total=iters * len(entries))
        res = interleaved(fns, iters=iters, warmup=warmup, block=block, min_time=min_time,
                          tick=lambda i: prog.advance(task), during=[during(i) for i in range(len(entries))])
    base = next((r for (c, n), r in zip(entries, res) if c.row.target == "torch" and n == 1), None)
    for i, ((c, n), r) in enumerate(zip(entries, res)):
        st = stats_from_ms(r.ms, n, warmup, sum(r.ms) / 1e3)
        if n == 1:
            c.row.latency = st.to_dict()
            c.row.spread_pct = round(r.spread_pct, 1)
            c.row.speedup = round(paired_speedup(base, r), 3) if base is not None else None
            if power[i]:
                c.row.power_w = round(sum(power[i]) / len(power[i]) / 1000.0, 3)
                c.row.power_source = f"{samplers[i].source}:{samplers[i].rail}"
                c.row.energy_mj = round(jetson.energy_mj(c.row.power_w, st.mean_ms), 3)
            if c.row.target == "trt" and hasattr(c.s1, "time_gpu"):
                c.row.gpu_compute = {k: round(v, 4) for k, v in c.s1.time_gpu(iters, warmup=warmup, batch=1).items()}
        else:
            c.row.latency_batch = st.to_dict()
    return noise_verdict({f"{c.row.name} {c.row.precision}": c.row.spread_pct for c, n in entries if n == 1},
                         load.pct, block)


def noise_verdict(spreads: dict[str, float | None], foreign_cpu_pct: float | None, block: int) -> dict[str, Any]:
    """Whether the timings can be trusted: rows' block-to-block spread and other processes' CPU."""
    spreads = {k: v for k, v in spreads.items() if v is not None}
    worst = max(spreads, key=spreads.get) if spreads else None
    noise = {"foreign_cpu_pct": None if foreign_cpu_pct is None else round(foreign_cpu_pct, 1),
             "max_spread_pct": spreads[worst] if worst else None, "block": block,
             "thresholds": {"spread_pct": NOISY_SPREAD_PCT, "foreign_cpu_pct": NOISY_FOREIGN_PCT}}
    why = []
    if worst and spreads[worst] > NOISY_SPREAD_PCT:
        why.append(f"{worst} block medians differ by {spreads[worst]:.0f}%")
    if foreign_cpu_pct is not None and foreign_cpu_pct > NOISY_FOREIGN_PCT:
        why.append(f"other processes used {foreign_cpu_pct:.0f}% of the CPUs while timing")
    noise["noisy"] = bool(why)
    noise["warning"] = ("⚠️  noisy machine: " + "; ".join(why) + ". Absolute times are not trustworthy; "
                        "speed-ups compare rows timed side by side. Re-run on an idle machine.") if why else ""
    return noise
