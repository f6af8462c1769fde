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
    face_detector: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = [t.strip() for t in self.targets.split(",") if t.strip()]
        if self.targets is not None and "all" in self.targets:
            self.targets = None
        if self.batch < 1 or self.iters < 1 or self.warmup < 0 or self.block < 1 or not self.fps > 0 \
                or not math.isfinite(self.fps) or not (math.isfinite(self.min_time) and self.min_time >= 0):
            raise BenchError("need --batch >= 1, --iters >= 1, --warmup >= 0, --fps > 0, --block >= 1, "
                             "--min-time >= 0")
        if self.threads is not None and self.threads < 1:
            raise BenchError(f"--threads must be >= 1, got {self.threads}")
        if self.device not in DEVICES:
            raise BenchError(f"unknown --device {self.device!r}; choose {', '.join(DEVICES)}")
        if self.pipeline is not None and not Path(self.pipeline).is_file():
            raise BenchError(f"--pipeline {self.pipeline}: no such video file")
        if self.pipeline_frames < 1 or self.pipeline_iters < 1:
            raise BenchError("need --pipeline-frames >= 1 and --pipeline-iters >= 1")
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
