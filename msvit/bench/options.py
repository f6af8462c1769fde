"""What ``msvit-bench`` is asked to do: :class:`BenchOptions` (one field per flag, checked when
built, before any work) and the benchmark's own errors."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from ..errors import MsvitError

DEVICES = ("cpu", "cuda", "jetson")


class BenchError(MsvitError):
    """The benchmark cannot run as asked (bad option, nothing to benchmark)."""


class DeviceUnavailableError(BenchError):
    """--device cuda without CUDA, --device jetson off a Jetson."""

    exit_code = 3


#: (field, flag, rule) of every numeric option: ">=N" an integer bound, "num>=0" / "num>0" a finite
#: number; checked in one place for BenchOptions and for msvit-bench's flags before any work
RANGES = (("batch", "--batch", ">=1"), ("iters", "--iters", ">=1"), ("warmup", "--warmup", ">=0"),
          ("block", "--block", ">=1"), ("threads", "--threads", ">=1"), ("pipeline_frames", "--pipeline-frames", ">=1"),
          ("pipeline_iters", "--pipeline-iters", ">=1"),
          ("pipeline_videos", "--pipeline-videos", ">=0"), ("min_time", "--min-time", "num>=0"),
          ("fps", "--fps", "num>0"), ("budget_gmacs", "--budget-gflops", "num>0"))


def check_ranges(value_of: Any) -> None:
    """:class:`BenchError` naming the flag of the first value outside its :data:`RANGES` rule;
    ``value_of(field)`` gives each value (None: not given)."""
    for name, flag, rule in RANGES:
        v = value_of(name)
        if v is None:
            continue
        if rule.startswith(">="):
            lo = int(rule[2:])
            if v < lo:
                hint = " (omit it for torch's default)" if name == "threads" else ""
                raise BenchError(f"{flag} must be >= {lo}, got {v}{hint}")
        elif not math.isfinite(v) or v < 0 or (rule == "num>0" and v == 0):
            raise BenchError(f"{flag} must be a {'positive' if rule == 'num>0' else 'non-negative'} number, got {v}")


@dataclass
class BenchOptions:
    """The benchmark's settings (``msvit-bench`` flags of the same names); the report's
    ``settings`` are these fields plus what the run resolved (threads, data description)."""

    model: str | None = None  # default: the artifacts' model, else ms_eff_vit_b0
    weights: str | os.PathLike | None = None
    pretrained: str | None = None  # a DeepGuard release: celeb_df_v2 | ff++
    attn_mode: str | None = None
    targets: Sequence[str] | str | None = None  # None/"all": every target; []: PyTorch alone
    precisions: Sequence[str] | None = None
    batch: int = 1
    iters: int = 50
    warmup: int = 10
    min_time: float = 0.0  # seconds each row is timed at least
    threads: int | None = None  # None: the cores other processes leave free
    data: Any = None  # folder / CSV / ImageSet / array; None: 8 built-in synthetic images
    fps: float = 30.0
    budget_gmacs: float | None = None
    out: str | os.PathLike | None = None  # where exports go (default: a temp dir, removed)
    artifacts: str | os.PathLike | None = None  # benchmark these instead of exporting
    device: str = "cpu"
    jetson_root: str | os.PathLike = "/"
    block: int = 10
    pipeline: str | os.PathLike | None = None  # a video: + end-to-end rows
    pipeline_frames: int = 20
    pipeline_iters: int = 5
    pipeline_videos: int = 4  # back-to-back videos per overlapped run (0: the sequential stages only)
    stage_threads: str = "auto"  # the overlapped stages' threads: auto (measured) or D,T,C
    face_detector: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = [t.strip() for t in self.targets.split(",") if t.strip()]
        if self.targets is not None and "all" in self.targets:
            self.targets = None
        check_ranges(lambda name: getattr(self, name))
        if self.device not in DEVICES:
            raise BenchError(f"unknown --device {self.device!r}; choose {', '.join(DEVICES)}")
        from ..errors import DataError
        from ..predict.overlap import StageThreads

        try:
            StageThreads.parse(self.stage_threads)
        except DataError as e:
            raise BenchError(str(e)) from None
        if self.pipeline is not None and not Path(self.pipeline).is_file():
            raise BenchError(f"--pipeline {self.pipeline}: no such video file")
        from ..export.targets import get_target

        for t in self.targets or []:
            get_target(t)  # raises ExportError listing the valid names

    def settings(self) -> dict[str, Any]:
        """The fields as JSON values (paths as strings, arrays and image sets described)."""
        out = {}
        for f in fields(self):  # not asdict(): it would deep-copy an image set
            k, v = f.name, getattr(self, f.name)
            if isinstance(v, os.PathLike):
                v = str(v)
            elif k == "data" and v is not None and not isinstance(v, str):
                v = type(v).__name__
            out[k] = list(v) if isinstance(v, tuple) else v
        return out
