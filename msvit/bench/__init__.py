"""msvit.bench: latency, memory, accuracy, compute and (on Jetson) power of every artifact,
against PyTorch eager FP32 measured in the same run.

>>> from msvit.bench import run
>>> rep = run(weights="W.bin", data="faces/eval", targets=["onnx"], iters=20)
>>> rep.rows[1].latency["p50_ms"], rep.rows[1].speedup, rep.compute["within_budget"]
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import MsvitError
from ..export.targets import TARGETS, get_target
from .metrics import evaluate
from .timing import LatencyStats, PeakMemory, measure

SCHEMA = "msvit-bench/1"
__all__ = ["SCHEMA", "BenchError", "BenchReport", "BenchRow", "DeviceUnavailableError", "ROW_KEYS",
           "discover_artifacts", "run"]


class BenchError(MsvitError):
    """The benchmark cannot run as asked (bad option, nothing to benchmark)."""


class DeviceUnavailableError(BenchError):
    """--device cuda without CUDA, --device jetson off a Jetson."""

    exit_code = 3


SUFFIX_TARGET = {t.suffix: t.name for t in TARGETS.values()}
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
    speedup: float | None = None  # torch eager p50 / this p50, batch 1, same run
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

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "settings": self.settings, "env": self.env, "compute": self.compute,
                "rows": [r.to_dict() for r in self.rows]}

    @property
    def baseline(self) -> BenchRow:
        return self.rows[0]


# ---------------------------------------------------------------- artifacts

@dataclass
class Artifact:
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

    def accepts(self, n: int) -> bool:
        return self.batch is None or self.batch == n


def _size_bytes(files: Sequence[Path]) -> int:
    from ..export.core import path_size

    return sum(path_size(Path(f)) for f in files)


def _from_name(p: Path) -> dict[str, Any]:
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    prec = next((pr for pr in ("int8_weights", "int8", "fp16", "fp32") if f"_{pr}" in stem), "fp32")
    m = re.search(r"_(?:fp32|fp16|int8|weights)_b(\d+)$", stem)
    return {"precision": prec.replace("_", "-"), "batch": None if "_dyn" in stem else int(m.group(1)) if m else 1,
            "model": next((v for v in ("ms_eff_vit_b0", "ms_eff_vit_b5") if stem.startswith(v)), None),
            "attn_mode": "applied" if "_applied_" in stem else None}


def discover_artifacts(folder: str | os.PathLike) -> list[Artifact]:
    """Artifacts msvit-export wrote, by suffix; precision/model/batch from the manifest
    ``<artifact>.json`` beside each, else from the file name."""
    root = Path(folder)
    if not root.is_dir():
        raise BenchError(f"--artifacts {root}: not a folder")
    found: list[Artifact] = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or any(part.endswith(".mlpackage") for part in rel[:-1]):
            continue  # temp dirs, and files inside a Core ML package
        target = SUFFIX_TARGET.get(p.suffix)
        if target is None or (target == "coreml") != p.is_dir():
            continue
        info = _from_name(p)
        a = Artifact(p, target, info["precision"], info["batch"], info["model"], info["attn_mode"], files=[p])
        if p.suffix == ".xml":
            a.files.append(p.with_suffix(".bin"))
        man = p.with_name(p.name + ".json")
        if man.is_file():
            try:
                doc = json.loads(man.read_text())
                meta, res = doc.get("metadata", {}), doc.get("result", {})
                a.precision = meta.get("precision", a.precision)
                a.model = meta.get("model", a.model)
                a.attn_mode = meta.get("attn_mode", a.attn_mode)
                a.weights_sha256 = meta.get("weights_sha256") or None
                n = str(meta.get("input_shape", "")).split("x")[0]
                a.batch = None if n == "N" else int(n) if n.isdigit() else a.batch
                a.status = {"ok": "ok", "failed": "failed"}.get(res.get("status"), "unavailable")
                a.message = res.get("message", "")
                if meta.get("target") == "trt" and target == "onnx":
                    a.target = "trt"  # the ONNX a TensorRT engine is built from: no engine here
                if res.get("files"):
                    a.files = [p.parent / Path(f).name for f in res["files"]]
            except (ValueError, OSError) as e:
                a.message = f"unreadable manifest {man.name}: {e}"
        elif re.search(r"_trt\d+\.onnx$", p.name):
            a.target, a.status, a.message = "trt", "unavailable", "ONNX for trtexec only: no engine built"
        found.append(a)
    # an engine supersedes the ONNX it was built from
    engines = {(a.precision, a.batch) for a in found if a.path.suffix == ".engine"}
    return [a for a in found if not (a.target == "trt" and a.path.suffix == ".onnx" and (a.precision, a.batch) in engines)]


# ---------------------------------------------------------------- runners

def _torch_runner(model, device: str) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    dev = torch.device("cuda" if device in ("cuda", "jetson") else "cpu")
    m = model.to(dev).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return m(torch.from_numpy(np.ascontiguousarray(x)).to(dev)).float().cpu().numpy()  # .cpu() syncs

    return run


def _load(target: str, path: Path, threads: int | None, device: str) -> tuple[Callable, str, str]:
    """(runner, device it runs on, note)."""
    from ..export import load_runner

    if target == "onnx" and device in ("cuda", "jetson"):
        import onnxruntime as ort

        from ..export.onnx import OrtRunner

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return OrtRunner(path, threads, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]), "cuda", ""
        return OrtRunner(path, threads), "cpu", "onnxruntime has no CUDA provider here: ran on CPU"
    if target == "executorch" and importlib.util.find_spec("msvit.export.executorch") is None:
        raise BenchError("msvit.export.executorch is not in this msvit build yet")
    return load_runner(target, path, threads=threads), ("cuda" if target == "trt" else "cpu"), ""


def _why_not(target: str) -> str:
    t = get_target(target)
    ok, why = t.can_run_here()
    if ok and target == "executorch" and importlib.util.find_spec("msvit.export.executorch") is None:
        return "msvit.export.executorch is not in this msvit build yet"
    return "" if ok else why


def _eval_logits(runner: Callable, x: np.ndarray, batch: int | None) -> np.ndarray:
    from ..export.validate import run_batched

    return run_batched(runner, x, batch or min(16, len(x)))


def _with_batch(x: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(x, (n, *x.shape[1:])).astype(np.float32))


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
) -> BenchReport:
    """Benchmark PyTorch eager FP32 (first row, the baseline) and each artifact.

    Without ``artifacts``, the selected ``targets`` (default: every target; those that
    cannot run here become ❌ rows) are exported into ``out`` (default: a temp dir, removed).
    ``targets=[]`` benchmarks PyTorch alone. ``data``: a folder/CSV (labelled real/ fake/ for
    Acc/AUC/log-loss), an ImageSet or an array; default 8 built-in synthetic images.
    """
    import torch

    from ..data import ImageSet, builtin_inputs, load_images
    from ..export.validate import DEFAULT_ATOL
    from ..model import B0_BUDGET_GMACS, create_model
    from ..model import profile as profile_model
    from . import env as envmod

    say = log or (lambda s: None)
    if batch < 1 or iters < 1 or warmup < 0 or fps <= 0:
        raise BenchError("need --batch >= 1, --iters >= 1, --warmup >= 0, --fps > 0")
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

    threads = int(threads or torch.get_num_threads())
    torch.set_num_threads(threads)  # the same count goes to ORT intra_op and OV INFERENCE_NUM_THREADS

    found = discover_artifacts(artifacts) if artifacts is not None else []
    if artifacts is not None and not found:
        raise BenchError(f"--artifacts {artifacts}: no .onnx/.xml/.ptl/.pte/.engine/.mlpackage files found")
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

    # evaluation inputs
    labels = None
    if data is None:
        x_eval, data_desc = builtin_inputs(8, size), "8 built-in synthetic images (agreement only)"
    elif isinstance(data, ImageSet):
        x_eval, labels, data_desc = data.x, data.labels, f"{len(data)} images from {data.source}"
    elif isinstance(data, np.ndarray):
        x_eval, data_desc = data.astype(np.float32), f"{len(data)} given inputs"
    else:
        say(f"reading images from {data}")
        s = load_images(data, size, progress=progress)
        x_eval, labels, data_desc = s.x, s.labels, f"{len(s)} images from {data}"
        if s.skipped:
            say(f"skipped {len(s.skipped)} unreadable files in {data}")
    say(f"evaluation data: {data_desc}" + ("" if labels is not None or data is None else " (no labels: agreement only)"))
    with torch.inference_mode():
        ref = np.concatenate([net(torch.from_numpy(x_eval[i:i + 16])).numpy() for i in range(0, len(x_eval), 16)])

    x1 = builtin_inputs(1, size)
    xn = _with_batch(builtin_inputs(min(batch, 8), size), batch) if batch > 1 else None

    # ---- candidates: (row, b1 artifact, bN artifact)
    rows: list[BenchRow] = []
    plan: list[tuple[BenchRow, Artifact | None, Artifact | None]] = []
    base = BenchRow("PyTorch", "torch", "fp32", "cuda" if device != "cpu" else "cpu", "ok", "✅", threads=threads,
                    size_mb=round(sum(t.numel() * t.element_size() for t in
                                      [*net.parameters(), *net.buffers()]) / 1e6, 3),
                    note="eager baseline; MB = fp32 tensors in memory")
    plan.append((base, None, None))
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if targets is not None and "all" in targets:
        targets = None
    if targets is not None:
        for t in targets:
            get_target(t)  # raises ExportError listing the valid names
    tmp_out = None
    if artifacts is None:
        names = list(targets) if targets is not None else (
            list(TARGETS) if device == "cpu" else ["onnx", "trt"])
        if out is None:
            tmp_out = out = tempfile.mkdtemp(prefix="msvit-bench-")
        from ..export import export

        verify = (x_eval[:8], f"first {min(8, len(x_eval))} of {data_desc}")
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
                    plan.append((row, None, None))
                    continue
                arts: list[Artifact | None] = []
                for b in ([1, batch] if batch > 1 else [1]):
                    say(f"exporting {name} {prec} batch {b} -> {out}")
                    r = export(net, name, prec, out, batch=b, strict=False, log=say, _verify=verify)
                    if r.path is None or not r.path.exists():
                        row.status, row.icon = ("unavailable", "❌") if r.status == "unavailable" else ("failed", "❎")
                        row.note = r.message
                        arts = []
                        break
                    arts.append(Artifact(r.path, name, prec, b, status=r.status, message=r.message, files=r.files))
                if arts:
                    row.status, row.icon = "ok", "✅"
                plan.append((row, arts[0] if arts else None, arts[1] if len(arts) > 1 else None))
    else:
        groups: dict[tuple, list[Artifact]] = {}
        for a in found:
            if targets is not None and a.target not in targets:
                continue
            if precisions and a.precision not in precisions:
                continue
            groups.setdefault((a.target, a.precision, a.model, a.attn_mode, a.path.suffix), []).append(a)
        for (tname, prec, _m, _am, _sfx), arts in groups.items():
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
            row = BenchRow(t.title, tname, prec, "cuda" if tname == "trt" else "cpu", "ok", "✅", threads=threads)
            why = _why_not(tname) if main.path.suffix == t.suffix else main.message
            if main.status == "unavailable" or why:
                row.status, row.icon, row.note = "unavailable", "❌", why or main.message
                row.artifact = str(main.path)
                row.size_mb = round(_size_bytes(main.files) / 1e6, 3)
                plan.append((row, None, None))
                continue
            if a1 is None:
                row.note = f"no batch-1 artifact (static batch {an.batch})"
            if main.weights_sha256 != (getattr(net, "weights_sha256", "") or None) or main.weights_sha256 is None:
                row.note = (row.note + "; " if row.note else "") + \
                    "exported from other/unknown weights: parity not judged"
                main.message = main.message or ""
                setattr(row, "_no_parity", True)
            plan.append((row, a1, an))

    # ---- run
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    runnable = [p for p in plan if p[0].status != "unavailable"]
    total = sum(iters * ((p[1] is not None or p[0].target == "torch") + (batch > 1 and (p[2] is not None or p[0].target == "torch")))
                for p in runnable)
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
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), disable=not progress, transient=True)
    try:
        with prog:
            task = prog.add_task("benchmark", total=max(1, total))
            tick = lambda: prog.advance(task)  # noqa: E731
            for row, a1, an in plan:
                rows.append(row)
                if row.status == "unavailable":
                    say(f"❌ {row.name} {row.precision}: {row.note}")
                    continue
                prog.update(task, description=f"{row.name} {row.precision}")
                say(f"timing {row.name} {row.precision} ({warmup} warm-up + >= {iters} runs"
                    + (f", >= {min_time:g} s" if min_time else "") + ")")
                _bench_row(row, a1, an, net, device, threads, x1, xn, x_eval, ref, labels, warmup, iters, min_time,
                           tick, sampler_factory)
                if a1 is not None and a1.status == "failed" and row.status == "ok":
                    row.status, row.icon = "failed", "❎"
                    row.note = a1.message
                if row.status == "ok" and row.max_abs_dlogit is not None and not getattr(row, "_no_parity", False):
                    atol = DEFAULT_ATOL.get(row.precision)
                    row.parity_atol = atol
                    if atol is not None:
                        row.parity_passed = row.max_abs_dlogit <= atol
                        if not row.parity_passed:
                            row.status, row.icon = "failed", "❎"
                            row.note = f"parity: max|Δlogit| {row.max_abs_dlogit:.2e} > atol {atol:g}"
                row.icon = ICONS[row.status]  # one source of truth for the icon
                say(_line(row))
    finally:
        if tmp_out is not None:
            shutil.rmtree(tmp_out, ignore_errors=True)

    b_p50 = rows[0].latency["p50_ms"] if rows[0].latency else None
    for r in rows:
        if r.latency:
            r.speedup = round(b_p50 / r.latency["p50_ms"], 3) if b_p50 else None
            r.realtime = r.latency["p99_ms"] <= 1000.0 / fps
    env = envmod.collect(threads, device)
    if jinfo is not None:
        env["jetson"] = jinfo.to_dict()
    settings = {"model": model, "attn_mode": attn_mode, "weights": str(weights) if weights else None,
                "pretrained": pretrained, "device": device, "batch": batch, "iters": iters, "warmup": warmup,
                "min_time_s": min_time, "threads": threads, "fps": fps, "realtime_budget_ms": 1000.0 / fps,
                "data": data_desc, "labelled": labels is not None,
                "artifacts": str(artifacts) if artifacts is not None else None,
                "out": None if tmp_out else (str(out) if out is not None else None)}
    return BenchReport(rows, env, compute, settings)


def _line(r: BenchRow) -> str:
    if r.latency is None:
        return f"{r.icon} {r.name} {r.precision}: {r.note}"
    return (f"{r.icon} {r.name} {r.precision}: p50 {r.latency['p50_ms']:.2f} ms, p99 {r.latency['p99_ms']:.2f} ms"
            + (f", agreement {r.agreement:.3f}" if r.agreement is not None else "") + (f" · {r.note}" if r.note else ""))


def _bench_row(row: BenchRow, a1: Artifact | None, an: Artifact | None, net, device: str, threads: int,
               x1: np.ndarray, xn: np.ndarray | None, x_eval: np.ndarray, ref: np.ndarray,
               labels: np.ndarray | None, warmup: int, iters: int, min_time: float, tick, sampler_factory) -> None:
    from . import jetson

    try:
        with PeakMemory() as mem:
            if row.target == "torch":
                r1 = rn = _torch_runner(net, device)
            else:
                assert a1 is not None or an is not None
                main = a1 or an
                row.artifact = str(a1.path) if a1 else None
                row.artifact_batch = str(an.path) if an else None
                row.size_mb = round(_size_bytes(main.files) / 1e6, 3)
                r1, row.device, note = _load(row.target, a1.path, threads, device) if a1 else (None, row.device, "")
                rn = r1 if (an is a1 or an is None) else _load(row.target, an.path, threads, device)[0]
                if note:
                    row.note = note
            sampler = sampler_factory() if sampler_factory else None
            if r1 is not None:
                st = measure(r1, x1, warmup, iters, min_time, during=sampler, tick=tick)
                row.latency = st.to_dict()
                if sampler is not None and sampler.avg_w is not None:
                    row.power_w, row.power_source = round(sampler.avg_w, 3), f"{sampler.source}:{sampler.rail}"
                    row.energy_mj = round(jetson.energy_mj(sampler.avg_w, st.mean_ms), 3)
                if row.target == "trt" and hasattr(r1, "time_gpu"):
                    row.gpu_compute = {k: round(v, 4) for k, v in r1.time_gpu(iters, warmup=warmup, batch=1).items()}
            if xn is not None and rn is not None:
                row.latency_batch = measure(rn, xn, warmup, iters, min_time, tick=tick).to_dict()
        row.memory_peak_mb = round(mem.peak_mb, 2) if mem.peak_mb is not None else None
        row.memory_method = mem.method
        # accuracy on the evaluation set, through the artifact's own (static) batch
        if row.target == "torch":
            # the CPU FP32 reference itself; on a GPU, what the GPU computes
            logits = ref if row.device == "cpu" else _eval_logits(r1, x_eval, None)
        else:
            use_n = rn is not None and an is not None and an.batch is not None and an.batch <= len(x_eval)
            logits = _eval_logits(rn if use_n else r1, x_eval, an.batch if use_n else (a1.batch if a1 else None))
        acc = evaluate(logits, ref, labels)
        row.n_eval = acc.n
        for k in ("accuracy", "auc", "log_loss", "agreement", "max_abs_dprob", "mean_abs_dprob", "max_abs_dlogit"):
            v = getattr(acc, k)
            setattr(row, k, None if v is None else round(float(v), 6 if k.startswith(("max", "mean")) else 5))
        if row.target != "torch":
            row.max_abs_dlogit = float(acc.max_abs_dlogit)
    except MsvitError as e:
        row.status, row.icon, row.note = "unavailable", "❌", str(e)
    except Exception as e:  # an artifact that exported but does not run: a failed check, not a crash
        row.status, row.icon, row.note = "failed", "❎", f"{type(e).__name__}: {e}"[:300]
