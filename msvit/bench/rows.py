"""The report's records: one :class:`BenchRow` per artifact (PyTorch eager first) and the
:class:`BenchReport` that holds them with the environment, compute and settings."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

SCHEMA = "msvit-bench/2"
ICONS = {"ok": "✅", "failed": "❎", "unavailable": "❌"}


@dataclass
class BenchRow:
    """One line of the report; every key is always present (None when not applicable)."""

    name: str  # "PyTorch", "ONNX", ...
    target: str  # "torch" or a msvit.export target name
    precision: str
    device: str  # where it ran: cpu | cuda
    status: str  # ok | failed | unavailable (the icon follows from it)
    note: str = ""
    artifact: str | None = None
    artifact_batch: str | None = None  # the artifact timed at --batch N, when N > 1
    size_mb: float | None = None  # on disk, directories and side files summed
    threads: int | None = None
    latency: dict[str, Any] | None = None  # batch 1: LatencyStats.to_dict()
    latency_batch: dict[str, Any] | None = None  # batch N (N > 1)
    spread_pct: float | None = None  # interquartile range of block medians / their median, batch 1
    input_kind: str = "tensor"  # image: the artifact takes letterboxed uint8 NHWC pixels (--input image)
    int8_mac_share: float | None = None  # INT8 artifacts: share of MACs its graph runs in int8 (metadata)
    exec_precision: str | None = None  # the float arithmetic the runtime executed (the artifact's exec_precision)
    precision_choice: str | None = None  # "auto": msvit-export --precision auto chose the precision
    speedup: float | None = None  # torch eager / this, median of per-round block ratios, batch 1
    memory_peak_mb: float | None = None
    memory_method: str | None = None
    realtime: bool | None = None  # p99 at batch 1 <= 1000 / fps
    n_eval: int | None = None
    accuracy: float | None = None
    auc: float | None = None
    log_loss: float | None = None
    agreement: float | None = None  # vs FP32 torch at 0.5
    max_abs_dprob: float | None = None
    mean_abs_dprob: float | None = None
    max_abs_dlogit: float | None = None
    parity_atol: float | None = None
    parity_passed: bool | None = None
    gpu_compute: dict[str, Any] | None = None  # TensorRT: CUDA-event time of execute_async_v3 only
    power_w: float | None = None
    energy_mj: float | None = None  # per image: avg W x mean ms / batch
    power_source: str | None = None
    # labelled --data: the operating points a deployment picks (FPR 1%/5% of the real inputs here;
    # None with fewer real inputs than ~3/FPR), and decisions at the artifact's own threshold
    tpr_at_fpr1: float | None = None
    tpr_at_fpr5: float | None = None
    threshold: float | None = None  # the artifact's operating threshold (msvit-calibrate's, else 0.5)
    agreement_at_threshold: float | None = None  # vs FP32 torch, both at that threshold and temperature

    @property
    def icon(self) -> str:
        return ICONS[self.status]

    def fail(self, note: str, status: str = "failed") -> None:
        """Mark the row failed (❎: ran, a check failed) or unavailable (❌: cannot run here)."""
        self.status, self.note = status, note

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["icon"] = self.icon
        return {k: d[k] for k in ROW_KEYS}


ROW_FIELDS = tuple(f.name for f in fields(BenchRow))
#: the keys of every row in the JSON report, in order (``icon`` right after ``status``)
ROW_KEYS = (*ROW_FIELDS[:5], "icon", *ROW_FIELDS[5:])


@dataclass
class BenchReport:
    rows: list[BenchRow]
    env: dict[str, Any]
    compute: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)  # foreign_cpu_pct, max_spread_pct, noisy, warning
    pipeline: list[Any] = field(default_factory=list)  # --pipeline VIDEO: msvit.bench.pipeline.PipelineRow

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "settings": self.settings, "env": self.env, "compute": self.compute,
                "noise": self.noise, "rows": [r.to_dict() for r in self.rows],
                "pipeline": [r.to_dict() for r in self.pipeline]}

    @property
    def baseline(self) -> BenchRow:
        return self.rows[0]


