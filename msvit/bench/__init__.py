"""msvit.bench: latency, memory, accuracy, compute and (on Jetson) power of every artifact,
against PyTorch eager FP32 measured in the same run.

Stages: discover (artifacts and the facts their manifests and metadata carry) -> load
(:func:`msvit.runtime.load`) -> time (every row round-robin in blocks, the baseline
included) -> evaluate (accuracy, agreement, parity) -> report.

>>> from msvit.bench import run
>>> rep = run(weights="W.bin", data="faces/eval", targets=["onnx"], iters=20)
>>> rep.rows[1].latency["p50_ms"], rep.rows[1].speedup, rep.compute["within_budget"]
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import MsvitError
from ..export.targets import TARGETS, get_target
from .metrics import evaluate
from .timing import (ForeignLoad, PeakMemory, busy_cores, free_threads, interleaved, paired_speedup,
                     stats_from_ms, usable_cores)

SCHEMA = "msvit-bench/2"
#: a row whose block medians differ by more than this, or other processes taking more than
#: NOISY_FOREIGN_PCT of the CPUs, makes the report say the timings cannot be trusted
NOISY_SPREAD_PCT = 25.0
NOISY_FOREIGN_PCT = 15.0
__all__ = ["SCHEMA", "BenchError", "BenchReport", "BenchRow", "DeviceUnavailableError", "ROW_KEYS",
           "discover_artifacts", "run"]


class BenchError(MsvitError):
    """The benchmark cannot run as asked (bad option, nothing to benchmark)."""


class DeviceUnavailableError(BenchError):
    """--device cuda without CUDA, --device jetson off a Jetson."""

    exit_code = 3


ICONS = {"ok": "✅", "failed": "❎", "unavailable": "❌"}


@dataclass
class BenchRow:
    """One line of the report; every key is always present (None when not applicable)."""

    name: str  # "PyTorch", "ONNX", ...
    target: str  # "torch" or a msvit.export target name
    precision: str
    device: str  # where it ran: cpu | cuda
    status: str  # ok | failed | unavailable
    icon: str
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

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ROW_KEYS = tuple(f.name for f in fields(BenchRow))


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


# ---------------------------------------------------------------- discover

@dataclass
class Artifact:
    """An artifact and the facts it carries about itself (manifest, else embedded metadata)."""

    path: Path
    target: str
    precision: str
    batch: int | None  # None = dynamic
    model: str | None = None
    attn_mode: str | None = None
    status: str = "ok"  # from the manifest, when there is one
    message: str = ""
    files: list[Path] = field(default_factory=list)
    weights_sha256: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, path: Path, meta: dict[str, str], target: str, files: list[Path] | None = None,
                      status: str = "ok", message: str = "") -> "Artifact":
        dim = str(meta.get("input_shape", "")).split("x")[0]
        return cls(path, meta.get("target", target) if target == "onnx" else target,
                   meta.get("precision", "unknown"), None if dim == "N" else int(dim) if dim.isdigit() else 1,
                   meta.get("model"), meta.get("attn_mode"), status, message, files or [path],
                   meta.get("weights_sha256") or None, meta)


def _size_bytes(files: Sequence[Path]) -> int:
    from ..export.core import path_size

    return sum(path_size(Path(f)) for f in files)


def _read_manifest(p: Path) -> dict[str, Any] | None:
    man = p.with_name(p.name + ".json")
    if not man.is_file():
        return None
    try:
        doc = json.loads(man.read_text())
        return doc if isinstance(doc, dict) else None
    except (ValueError, OSError):
        return None


def discover_artifacts(folder: str | os.PathLike) -> list[Artifact]:
    """Artifacts in a folder (recursive), each described by its manifest ``<artifact>.json``
    or, without one, by the metadata embedded in the artifact (never by its file name)."""
    from .. import runtime

    root = Path(folder)
    if not root.is_dir():
        raise BenchError(f"--artifacts {root}: not a folder")
    found: list[Artifact] = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or any(part.endswith(".mlpackage") for part in rel[:-1]):
            continue  # temp dirs, and files inside a Core ML package
        fmt = runtime.SUFFIXES.get(p.suffix.lower())
        if fmt is None or (fmt.name == "coreml") != p.is_dir():
            continue
        files = [p, p.with_suffix(".bin")] if p.suffix == ".xml" else [p]
        doc = _read_manifest(p)
        if doc is not None:
            res = doc.get("result", {})
            a = Artifact.from_metadata(p, doc.get("metadata", {}), fmt.name,
                                       [p.parent / Path(f).name for f in res.get("files") or []] or files,
                                       {"ok": "ok", "failed": "failed"}.get(res.get("status"), "unavailable"),
                                       res.get("message", ""))
        else:
            try:
                meta = runtime.read_metadata(p)
                a = Artifact.from_metadata(p, meta, fmt.name, files)
                if not meta:
                    a.message = "no msvit metadata in the artifact: parity not judged"
            except MsvitError as e:
                a = Artifact(p, fmt.name, "unknown", 1, files=files, status="unavailable", message=str(e))
        if a.target == "trt" and p.suffix == ".onnx" and a.status == "ok":
            a.status, a.message = "unavailable", "ONNX for trtexec only: no engine built"
        found.append(a)
    # an engine supersedes the ONNX it was built from
    engines = {(a.precision, a.batch) for a in found if a.path.suffix == ".engine"}
    return [a for a in found if not (a.target == "trt" and a.path.suffix == ".onnx" and (a.precision, a.batch) in engines)]


# ---------------------------------------------------------------- plan rows

@dataclass
class Candidate:
    """A row and what it runs: the batch-1 artifact and the batch-N one (may be the same)."""

    row: BenchRow
    a1: Artifact | None = None
    an: Artifact | None = None
    judge_parity: bool = True  # False: exported from other/unknown weights
    s1: Any = None  # msvit.runtime.Session at batch 1
    sn: Any = None  # ... at batch N


def _why_not(target: str) -> str:
    ok, why = get_target(target).can_run_here()
    return "" if ok else why


def _export_rows(net, names: list[str], precisions: Sequence[str] | None, batch: int, out: str | os.PathLike,
                 threads: int, verify, say) -> list[Candidate]:
    from ..export import export

    cands = []
    for name in names:
        t = get_target(name)
        for prec in (precisions or [t.default_precision]):
            row = BenchRow(t.title, name, prec, "cuda" if name == "trt" else "cpu", "unavailable", "❌",
                           threads=threads)
            if prec not in t.precisions:
                say(f"skip {name} {prec}: not offered (has {', '.join(t.precisions)})")
                continue
            why = _why_not(name)
            if not why and prec == "int8":
                why = "int8 needs calibration: export it with msvit-export --calib-data, then --artifacts"
            if why:
                row.note = why
                cands.append(Candidate(row))
                continue
            arts: list[Artifact] = []
            for b in ([1, batch] if batch > 1 else [1]):
                say(f"exporting {name} {prec} batch {b} -> {out}")
                r = export(net, name, prec, out, batch=b, strict=False, log=say, verify_data=verify)
                if r.path is None or not r.path.exists():
                    row.status, row.icon = ("unavailable", "❌") if r.status == "unavailable" else ("failed", "❎")
                    row.note = r.message
                    arts = []
                    break
                arts.append(Artifact(r.path, name, prec, b, status=r.status, message=r.message, files=r.files))
            if arts:
                row.status, row.icon = "ok", "✅"
            cands.append(Candidate(row, arts[0] if arts else None, arts[-1] if len(arts) > 1 else None))
    return cands


def _artifact_rows(found: list[Artifact], targets: Sequence[str] | None, precisions: Sequence[str] | None,
                   batch: int, threads: int, net, say) -> list[Candidate]:
    groups: dict[tuple, list[Artifact]] = {}
    for a in found:
        if targets is not None and a.target not in targets:
            continue
        if precisions and a.precision not in precisions:
            continue
        kind = a.metadata.get("input_kind", "tensor")  # tensor and --input image variants are rows of their own
        groups.setdefault((a.target, a.precision, a.model, a.attn_mode, a.path.suffix, kind), []).append(a)
    cands = []
    for (tname, prec, _m, _am, _sfx, kind), arts in groups.items():
        t = get_target(tname)
        a1 = next((a for a in arts if a.batch == 1), None) or next((a for a in arts if a.batch is None), None)
        an = (next((a for a in arts if a.batch == batch), None) or next((a for a in arts if a.batch is None), None)
              ) if batch > 1 else None
        for a in arts:
            if a is not a1 and a is not an:
                say(f"skip {a.path.name}: static batch {a.batch} (pass --batch {a.batch})")
        if a1 is None and an is None:
            continue
        main = a1 or an
        row = BenchRow(t.title, tname, prec, "cuda" if tname == "trt" else "cpu", "ok", "✅", threads=threads,
                       artifact=str(main.path), size_mb=round(_size_bytes(main.files) / 1e6, 3), input_kind=kind,
                       note="uint8 image input" if kind == "image" else "")
        why = _why_not(tname) if main.path.suffix != ".onnx" or tname != "trt" else main.message
        if main.status == "unavailable" or why:
            row.status, row.icon, row.note = "unavailable", "❌", why or main.message
            cands.append(Candidate(row))
            continue
        c = Candidate(row, a1, an)
        if a1 is None:
            row.note = (row.note + "; " if row.note else "") + f"no batch-1 artifact (static batch {an.batch})"
        if main.weights_sha256 is None or main.weights_sha256 != (getattr(net, "weights_sha256", "") or None):
            row.note = (row.note + "; " if row.note else "") + "exported from other/unknown weights: parity not judged"
            c.judge_parity = False
        cands.append(c)
    return cands


# ---------------------------------------------------------------- load

def _load_row(c: Candidate, net, device: str, threads: int, x1: np.ndarray, warmup: int) -> None:
    """Open the row's sessions (memory measured over load + warm-up) or mark the row."""
    from .. import runtime

    def open_(a: Artifact):
        if c.row.target == "onnx" and device in ("cuda", "jetson"):
            try:
                return runtime.load(a.path, threads, device="cuda", spinning=False)
            except MsvitError:
                c.row.note = "onnxruntime has no CUDA provider here: ran on CPU"
        # no idle spinning: a spinning onnxruntime pool steals the core of the row being timed
        opts = {"spinning": False} if a.path.suffix in (".onnx", ".ort") else {}
        return runtime.load(a.path, threads, device="cpu" if c.row.target != "trt" else "cuda", **opts)

    try:
        with PeakMemory() as mem:
            if c.row.target == "torch":
                c.s1 = c.sn = runtime.from_model(net, threads, device)
            else:
                c.row.artifact = str(c.a1.path) if c.a1 else None
                c.row.artifact_batch = str(c.an.path) if c.an else None
                c.s1 = open_(c.a1) if c.a1 else None
                c.sn = c.s1 if (c.an is None or c.an is c.a1) else open_(c.an)
            c.row.device = (c.s1 or c.sn).device
            for _ in range(max(1, warmup)):
                (c.s1 or c.sn).run(x1 if c.s1 else x1.repeat(c.an.batch or 1, 0))
        c.row.memory_peak_mb = round(mem.peak_mb, 2) if mem.peak_mb is not None else None
        c.row.memory_method = mem.method
    except MsvitError as e:
        c.row.status, c.row.icon, c.row.note = "unavailable", "❌", str(e)
    except Exception as e:  # an artifact that exported but does not run: a failed check, not a crash
        c.row.status, c.row.icon, c.row.note = "failed", "❎", f"{type(e).__name__}: {e}"[:300]


# ---------------------------------------------------------------- time

def _time_rows(cands: list[Candidate], x1: np.ndarray, xn: np.ndarray | None, iters: int, warmup: int,
               min_time: float, block: int, progress: bool, sampler_factory) -> dict[str, Any]:
    """Every runnable row (batch 1, then batch N) round-robin in one interleaved run."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import jetson

    entries: list[tuple[Candidate, int]] = []
    for c in cands:
        if c.row.status == "unavailable":
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


# ---------------------------------------------------------------- evaluate

def _evaluate_row(c: Candidate, x_eval: np.ndarray, ref: np.ndarray, labels: np.ndarray | None,
                  real_data: bool = True) -> None:
    from ..export.validate import DEFAULT_ATOL

    row = c.row
    try:
        if row.target == "torch" and row.device == "cpu":
            logits = ref  # the CPU FP32 reference itself
        else:  # the batch-N session when it holds a whole batch of the data, else batch 1
            s = c.sn if (c.sn is not None and c.sn.batch is not None and c.sn.batch <= len(x_eval)) else (c.s1 or c.sn)
            logits = s.run(x_eval)
    except MsvitError as e:
        row.status, row.icon, row.note = "unavailable", "❌", str(e)
        return
    except Exception as e:
        row.status, row.icon, row.note = "failed", "❎", f"{type(e).__name__}: {e}"[:300]
        return
    acc = evaluate(logits, ref, labels)
    row.n_eval = acc.n
    for k in ("accuracy", "auc", "log_loss", "agreement", "max_abs_dprob", "mean_abs_dprob", "max_abs_dlogit"):
        v = getattr(acc, k)
        setattr(row, k, None if v is None else round(float(v), 6 if k.startswith(("max", "mean")) else 5))
    if row.target != "torch":
        row.max_abs_dlogit = float(acc.max_abs_dlogit)
    share = (c.s1 or c.sn).metadata.get("int8_mac_share") if row.target != "torch" else None
    row.int8_mac_share = float(share) if share is not None else None
    if row.target != "torch":
        sess = c.s1 or c.sn
        row.exec_precision = sess.exec_precision
        row.precision_choice = sess.metadata.get("precision_choice") or None
    main = c.a1 or c.an
    if main is not None and main.status == "failed" and row.status == "ok":
        row.status, row.icon, row.note = "failed", "❎", main.message
    # built-in synthetic images are no face crops: the gate speaks of face data only (--data)
    gate = (c.s1 or c.sn).metadata.get("guard_max_dprob") if row.target != "torch" and real_data else None
    if gate is not None and row.status == "ok" and c.judge_parity and row.max_abs_dprob is not None:
        # the INT8 guard's promise, checked on this data: |ΔP| within the gate recorded in the artifact
        if row.max_abs_dprob > float(gate):
            row.status, row.icon = "failed", "❎"
            row.note = (f"INT8 max|ΔP| {row.max_abs_dprob:.3f} on this data > the artifact's own gate "
                        f"{float(gate):g} (guard_max_dprob)")
    atol = DEFAULT_ATOL.get(row.precision)
    if row.status == "ok" and row.target != "torch" and c.judge_parity and atol is not None:
        row.parity_atol = atol
        row.parity_passed = row.max_abs_dlogit <= atol
        if not row.parity_passed:
            row.status, row.icon = "failed", "❎"
            row.note = f"parity: max|Δlogit| {row.max_abs_dlogit:.2e} > atol {atol:g}"


# ---------------------------------------------------------------- run

def run(
    model: str | None = None,
    weights: str | os.PathLike | None = None,
    pretrained: str | None = None,
    attn_mode: str | None = None,
    targets: Sequence[str] | str | None = None,
    precisions: Sequence[str] | None = None,
    batch: int = 1,
    iters: int = 50,
    warmup: int = 10,
    min_time: float = 0.0,
    threads: int | None = None,
    data: Any = None,
    fps: float = 30.0,
    budget_gmacs: float | None = None,
    out: str | os.PathLike | None = None,
    artifacts: str | os.PathLike | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = print,
    progress: bool = True,
    jetson_root: str | os.PathLike = "/",
    block: int = 10,
    pipeline: str | os.PathLike | None = None,
    pipeline_frames: int = 20,
    pipeline_iters: int = 5,
    face_detector: str | None = None,
) -> BenchReport:
    """Benchmark PyTorch eager FP32 (first row, the baseline) and each artifact, all timed
    round-robin in blocks of ``block`` runs in one interleaved run.

    Without ``artifacts``, the selected ``targets`` (default: every target; those that
    cannot run here become ❌ rows) are exported into ``out`` (default: a temp dir, removed).
    ``targets=[]`` benchmarks PyTorch alone. ``data``: a folder/CSV (labelled real/ fake/ for
    Acc/AUC/log-loss), an ImageSet or an array; default 8 built-in synthetic images.
    ``pipeline``: a video; adds end-to-end rows (decode, detect, crop, classify) per artifact.
    """
    import torch

    from ..data import builtin_inputs, resolve_data
    from ..model import B0_BUDGET_GMACS, create_model
    from ..model import profile as profile_model
    from . import env as envmod

    say = log or (lambda s: None)
    if batch < 1 or iters < 1 or warmup < 0 or fps <= 0 or block < 1:
        raise BenchError("need --batch >= 1, --iters >= 1, --warmup >= 0, --fps > 0, --block >= 1")
    if threads is not None and threads < 1:
        raise BenchError(f"--threads must be >= 1, got {threads}")
    if device not in ("cpu", "cuda", "jetson"):
        raise BenchError(f"unknown --device {device!r}; choose cpu, cuda or jetson")
    jinfo = None
    if device == "jetson":
        from . import jetson

        jinfo = jetson.detect_jetson(jetson_root)
        if jinfo is None:
            raise DeviceUnavailableError("--device jetson: this is not an NVIDIA Jetson (no /etc/nv_tegra_release, "
                                         "/proc/device-tree/model does not name Jetson/NVIDIA); use --device cpu or cuda")
    if device in ("cuda", "jetson") and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {device}: torch sees no CUDA GPU "
                                     f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'})")
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if targets is not None and "all" in targets:
        targets = None
    for t in targets or []:
        get_target(t)  # raises ExportError listing the valid names
    if pipeline is not None and not Path(pipeline).is_file():
        raise BenchError(f"--pipeline {pipeline}: no such video file")
    if pipeline_frames < 1 or pipeline_iters < 1:
        raise BenchError("need --pipeline-frames >= 1 and --pipeline-iters >= 1")

    auto_threads = threads is None and device == "cpu"
    threads = int(threads or torch.get_num_threads())
    torch.set_num_threads(threads)  # the same count goes to ORT intra_op and OV INFERENCE_NUM_THREADS
    all_threads, busy = threads, None

    # ---- discover
    found = discover_artifacts(artifacts) if artifacts is not None else []
    if artifacts is not None and not found:
        raise BenchError(f"--artifacts {artifacts}: no .onnx/.xml/.ptl/.pte/.engine/.mlpackage/.tflite files found")
    model = model or next((a.model for a in found if a.model), None) or "ms_eff_vit_b0"
    attn_mode = attn_mode or next((a.attn_mode for a in found if a.attn_mode), None) or "deepguard"
    say(f"building {model} (attn_mode={attn_mode}, weights={weights or pretrained or 'untrained'})")
    net = create_model(model, weights=weights, pretrained=bool(pretrained), dataset=pretrained or "celeb_df_v2",
                       attn_mode=attn_mode).eval()
    size = int(getattr(net, "img_size", 224))

    say("counting params and MACs (msvit.model.profile)")
    prof = profile_model(net)
    budget = float(budget_gmacs if budget_gmacs is not None else B0_BUDGET_GMACS)
    compute = {
        "model": prof.model, "attn_mode": prof.attn_mode, "input": "x".join(map(str, prof.input_size)),
        "params": prof.params, "params_m": round(prof.params / 1e6, 3),
        "macs": prof.macs, "gmacs": round(prof.gmacs, 4), "gflops": round(prof.gflops, 4),
        "convention": "GMACs = multiply-accumulates = fvcore/DeepGuard 'FLOPs'; GFLOPs = 2 x GMACs",
        "budget_gmacs": budget, "within_budget": prof.within_budget(budget),
        "icon": "✅" if prof.within_budget(budget) else "❌",
    }

    if data is not None and not isinstance(data, np.ndarray):
        say(f"reading images from {data}")
    ev = resolve_data(data, size, progress=progress)
    labels = ev.labels
    data_desc = ev.description + (" (agreement only)" if data is None else "")
    if ev.skipped:
        say(f"skipped {len(ev.skipped)} unreadable files in {data}: "
            + ", ".join(f"{p.name} ({why})" for p, why in ev.skipped[:3]) + (" ..." if len(ev.skipped) > 3 else ""))
    say(f"evaluation data: {data_desc}" + ("" if labels is not None or data is None else " (no labels: agreement only)"))
    ref = np.concatenate([runtime_ref(net, ev.x[i:i + 16]) for i in range(0, len(ev.x), 16)])

    x1 = builtin_inputs(1, size)
    xn = np.ascontiguousarray(np.resize(builtin_inputs(min(batch, 8), size), (batch, 3, size, size))) \
        if batch > 1 else None

    base = BenchRow("PyTorch", "torch", "fp32", "cuda" if device != "cpu" else "cpu", "ok", "✅", threads=threads,
                    size_mb=round(sum(t.numel() * t.element_size() for t in
                                      [*net.parameters(), *net.buffers()]) / 1e6, 3),
                    note="eager baseline; MB = fp32 tensors in memory")
    cands = [Candidate(base)]
    tmp_out = None
    try:
        if artifacts is None:
            names = list(targets) if targets is not None else (list(TARGETS) if device == "cpu" else ["onnx", "trt"])
            if out is None:
                tmp_out = out = tempfile.mkdtemp(prefix="msvit-bench-")
            verify = ev.subset(range(min(8, len(ev))))
            cands += _export_rows(net, names, precisions, batch, out, threads, verify, say)
        else:
            cands += _artifact_rows(found, targets, precisions, batch, threads, net, say)

        # ---- load
        sampler_factory = None
        if device == "jetson":
            from . import jetson

            jinfo.nvpmodel = jetson.query_nvpmodel()
            jinfo.tensorrt = envmod.versions().get("tensorrt")
            if jinfo.clocks_locked is False:
                say(f"⚠️  Jetson clocks {jinfo.clocks_detail}: latency and power will vary")
            if jetson.PowerSampler(jetson_root).available:
                sampler_factory = lambda: jetson.PowerSampler(jetson_root)  # noqa: E731
            else:
                say("⚠️  no INA3221 rails in sysfs and no tegrastats: power not measured")
        if auto_threads:  # sessions fix their thread count when loaded: decide now, after any export
            busy = busy_cores(1.0)
            fit = free_threads(min(threads, usable_cores()), busy)
            if fit < threads:
                say(f"other processes keep {busy:.1f} of {usable_cores()} cores busy: timing with {fit} "
                    f"thread{'s' if fit > 1 else ''}, on the free cores (--threads N to override)")
                threads = fit
                torch.set_num_threads(threads)
                for c in cands:
                    c.row.threads = threads
        for c in cands:
            if c.row.status == "unavailable":
                say(f"❌ {c.row.name} {c.row.precision}: {c.row.note}")
                continue
            say(f"loading {c.row.name} {c.row.precision}")
            _load_row(c, net, device, threads, x1, warmup)

        # ---- time (all rows interleaved), evaluate
        say(f"timing {sum(c.s1 is not None or c.sn is not None for c in cands)} rows interleaved in blocks of "
            f"{block} ({warmup} warm-up + >= {iters} runs each" + (f", >= {min_time:g} s" if min_time else "") + ")")
        noise = _time_rows(cands, x1, xn, iters, warmup, min_time, block, progress, sampler_factory)
        for c in cands:
            if c.s1 is not None or c.sn is not None:
                _evaluate_row(c, ev.x, ref, labels, real_data=data is not None)
            c.row.icon = ICONS[c.row.status]  # one source of truth for the icon
            if c.row.latency is not None or c.row.status != "unavailable":
                say(_line(c.row))
        pipe_rows = []
        if pipeline is not None:
            from .pipeline import time_pipeline

            pipe_rows = time_pipeline([(c.row.name, c.row.precision, c.s1 or c.sn) for c in cands
                                       if c.row.status != "unavailable" and (c.s1 or c.sn) is not None],
                                      pipeline, num_frames=pipeline_frames, iters=pipeline_iters, fps=fps,
                                      face_detector=face_detector, threads=threads, log=say)
    finally:
        for c in cands:
            for s in {id(x): x for x in (c.s1, c.sn) if x is not None}.values():
                s.close()
        if tmp_out is not None:
            shutil.rmtree(tmp_out, ignore_errors=True)
    if noise.get("warning") and threads < all_threads:
        noise["warning"] = noise["warning"].replace(
            "Re-run on an idle machine.", f"Timed with {threads} of {all_threads} threads, on the cores other "
            "processes left free; re-run on an idle machine for all-core figures.")
    if noise.get("warning"):
        say(noise["warning"])

    rows = [c.row for c in cands]
    for r in rows:
        if r.latency:
            r.realtime = r.latency["p99_ms"] <= 1000.0 / fps
    env = envmod.collect(threads, device)
    if jinfo is not None:
        env["jetson"] = jinfo.to_dict()
    settings = {"model": model, "attn_mode": attn_mode, "weights": str(weights) if weights else None,
                "pretrained": pretrained, "device": device, "batch": batch, "iters": iters, "warmup": warmup,
                "block": block, "min_time_s": min_time, "threads": threads, "fps": fps,
                "threads_auto": auto_threads, "busy_cores": None if busy is None else round(busy, 2),
                "realtime_budget_ms": 1000.0 / fps, "data": data_desc, "labelled": labels is not None,
                "artifacts": str(artifacts) if artifacts is not None else None,
                "out": None if tmp_out else (str(out) if out is not None else None),
                "pipeline": str(pipeline) if pipeline is not None else None, "pipeline_frames": pipeline_frames}
    return BenchReport(rows, env, compute, settings, noise, pipe_rows)


def runtime_ref(net, x: np.ndarray) -> np.ndarray:
    """FP32 PyTorch logits on the CPU: the reference every row is judged against."""
    import torch

    with torch.inference_mode():
        return net(torch.from_numpy(x)).numpy()


def _line(r: BenchRow) -> str:
    if r.latency is None:
        return f"{r.icon} {r.name} {r.precision}: {r.note}"
    return (f"{r.icon} {r.name} {r.precision}: p50 {r.latency['p50_ms']:.2f} ms, p99 {r.latency['p99_ms']:.2f} ms"
            + (f", agreement {r.agreement:.3f}" if r.agreement is not None else "") + (f" · {r.note}" if r.note else ""))
