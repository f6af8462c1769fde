"""Run: discover or export -> plan rows -> load -> time (interleaved) -> evaluate -> report."""
from __future__ import annotations

import shutil
import tempfile
from typing import Any, Callable

import numpy as np

from ..export.targets import TARGETS
from ..model.info import model_info
from .discovery import discover_artifacts
from .evaluate import evaluate_row
from .load import load_row
from .options import BenchError, BenchOptions, DeviceUnavailableError
from .plan import Candidate, artifact_rows, export_rows
from .rows import BenchReport, BenchRow
from .timing import busy_cores, free_threads, time_rows, usable_cores


def run(options: BenchOptions | None = None, *, log: Callable[[str], None] | None = print, progress: bool = True,
        **fields: Any) -> BenchReport:
    """Benchmark PyTorch eager FP32 (first row, the baseline) and each artifact, all timed
    round-robin in blocks of ``block`` runs in one interleaved run.

    ``options`` (or its fields as keywords: ``run(weights=..., targets=["onnx"])``): see
    :class:`BenchOptions`. Without ``artifacts``, the selected ``targets`` (default: every
    target; those that cannot run here become ❌ rows) are exported into ``out`` (default: a
    temp dir, removed). ``targets=[]`` benchmarks PyTorch alone. ``data``: a folder/CSV
    (labelled real/ fake/ for Acc/AUC/log-loss), an ImageSet or an array; default 8 built-in
    synthetic images. ``pipeline``: a video; adds end-to-end rows (decode, detect, crop,
    classify) per artifact.
    """
    import torch

    if options is None:
        options = BenchOptions(**fields)
    elif fields:
        raise TypeError("pass either a BenchOptions or its fields as keywords, not both")
    o = options
    say = log or (lambda s: None)
    jinfo = _check_device(o)

    auto_threads = o.threads is None and o.device == "cpu"
    threads = int(o.threads or torch.get_num_threads())
    torch.set_num_threads(threads)  # the same count goes to ORT intra_op and OV INFERENCE_NUM_THREADS
    all_threads, busy = threads, None

    # ---- discover, build the reference
    found = discover_artifacts(o.artifacts) if o.artifacts is not None else []
    if o.artifacts is not None and not found:
        raise BenchError(f"--artifacts {o.artifacts}: no .onnx/.xml/.ptl/.pte/.engine/.mlpackage/.tflite files found")
    model = o.model or next((a.model for a in found if a.model), None) or "ms_eff_vit_b0"
    attn_mode = o.attn_mode or next((a.attn_mode for a in found if a.attn_mode), None) or "deepguard"
    net = _build(o, model, attn_mode, say)
    compute = _compute(net, o.budget_gmacs, say)
    ev, data_desc = _eval_data(o, model_info(net).img_size, progress, say)
    ref = np.concatenate([runtime_ref(net, ev.x[i:i + 16]) for i in range(0, len(ev.x), 16)])
    x1, xn = _timing_inputs(o.batch, model_info(net).img_size)

    base = BenchRow("PyTorch", "torch", "fp32", "cuda" if o.device != "cpu" else "cpu", "ok", threads=threads,
                    size_mb=round(sum(t.numel() * t.element_size() for t in
                                      [*net.parameters(), *net.buffers()]) / 1e6, 3),
                    note="eager baseline; MB = fp32 tensors in memory")
    cands = [Candidate(base)]
    tmp_out = out = None
    noise: dict[str, Any] = {}
    pipe_rows: list[Any] = []
    try:
        # ---- plan
        if o.artifacts is None:
            names = list(o.targets) if o.targets is not None else (list(TARGETS) if o.device == "cpu" else ["onnx", "trt"])
            out = o.out
            if out is None:
                tmp_out = out = tempfile.mkdtemp(prefix="msvit-bench-")
            cands += export_rows(net, names, o.precisions, o.batch, out, threads, ev.subset(range(min(8, len(ev)))), say)
        else:
            cands += artifact_rows(found, o.targets, o.precisions, o.batch, threads, net, say)

        # ---- load
        sampler_factory = _jetson_power(o, jinfo, say) if jinfo is not None else None
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
            if c.row.status != "ok":
                say(f"{c.row.icon} {c.row.name} {c.row.precision}: {c.row.note}")
                continue
            say(f"loading {c.row.name} {c.row.precision}")
            load_row(c, net, o.device, threads, x1, o.warmup)

        # ---- time (all rows interleaved), evaluate
        say(f"timing {sum(c.s1 is not None or c.sn is not None for c in cands)} rows interleaved in blocks of "
            f"{o.block} ({o.warmup} warm-up + >= {o.iters} runs each"
            + (f", >= {o.min_time:g} s" if o.min_time else "") + ")")
        noise = time_rows(cands, x1, xn, o.iters, o.warmup, o.min_time, o.block, progress, sampler_factory)
        for c in cands:
            if c.s1 is not None or c.sn is not None:
                evaluate_row(c, ev.x, ref, ev.labels, real_data=o.data is not None)
            if c.row.latency is not None or c.row.status != "unavailable":
                say(_line(c.row))
        if o.pipeline is not None:
            from .pipeline import time_pipeline

            pipe_rows = time_pipeline([(c.row.name, c.row.precision, c.s1 or c.sn) for c in cands
                                       if c.row.status != "unavailable" and (c.s1 or c.sn) is not None],
                                      o.pipeline, num_frames=o.pipeline_frames, iters=o.pipeline_iters, fps=o.fps,
                                      face_detector=o.face_detector, threads=threads, log=say,
                                      overlap_videos=o.pipeline_videos, stage_threads=o.stage_threads)
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
            r.realtime = r.latency["p99_ms"] <= 1000.0 / o.fps
    from . import env as envmod

    env = envmod.collect(threads, o.device)
    if jinfo is not None:
        env["jetson"] = jinfo.to_dict()
    settings = {**o.settings(), "model": model, "attn_mode": attn_mode, "threads": threads,
                "threads_auto": auto_threads, "busy_cores": None if busy is None else round(busy, 2),
                "realtime_budget_ms": 1000.0 / o.fps, "data": data_desc, "labelled": ev.labels is not None,
                "out": None if tmp_out else (str(out) if out is not None else None)}
    return BenchReport(rows, env, compute, settings, noise, pipe_rows)


# ---------------------------------------------------------------- the steps

def _check_device(o: BenchOptions):
    """The Jetson's facts for --device jetson (else None); a missing device is an error before any work."""
    import torch

    jinfo = None
    if o.device == "jetson":
        from . import jetson

        jinfo = jetson.detect_jetson(o.jetson_root)
        if jinfo is None:
            raise DeviceUnavailableError("--device jetson: this is not an NVIDIA Jetson (no /etc/nv_tegra_release, "
                                         "/proc/device-tree/model does not name Jetson/NVIDIA); use --device cpu or cuda")
    if o.device in ("cuda", "jetson") and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {o.device}: torch sees no CUDA GPU "
                                     f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'})")
    return jinfo


def _build(o: BenchOptions, model: str, attn_mode: str, say: Callable[[str], None]):
    from ..model import create_model

    say(f"building {model} (attn_mode={attn_mode}, weights={o.weights or o.pretrained or 'untrained'})")
    return create_model(model, weights=o.weights, pretrained=bool(o.pretrained), dataset=o.pretrained or "celeb_df_v2",
                        attn_mode=attn_mode).eval()


def _compute(net, budget_gmacs: float | None, say: Callable[[str], None]) -> dict[str, Any]:
    from ..model import B0_BUDGET_GMACS
    from ..model import profile as profile_model

    say("counting params and MACs (msvit.model.profile)")
    prof = profile_model(net)
    budget = float(budget_gmacs if budget_gmacs is not None else B0_BUDGET_GMACS)
    ok = prof.within_budget(budget)
    return {
        "model": prof.model, "attn_mode": prof.attn_mode, "input": "x".join(map(str, prof.input_size)),
        "params": prof.params, "params_m": round(prof.params / 1e6, 3),
        "macs": prof.macs, "gmacs": round(prof.gmacs, 4), "gflops": round(prof.gflops, 4),
        "convention": "GMACs = multiply-accumulates = fvcore/DeepGuard 'FLOPs'; GFLOPs = 2 x GMACs",
        "budget_gmacs": budget, "within_budget": ok, "icon": "✅" if ok else "❌",
    }


def _eval_data(o: BenchOptions, size: int, progress: bool, say: Callable[[str], None]):
    from ..data import resolve_data

    if o.data is not None and not isinstance(o.data, np.ndarray):
        say(f"reading images from {o.data}")
    ev = resolve_data(o.data, size, progress=progress)
    desc = ev.description + (" (agreement only)" if o.data is None else "")
    if ev.skipped:
        say(f"skipped {len(ev.skipped)} unreadable files in {o.data}: "
            + ", ".join(f"{p.name} ({why})" for p, why in ev.skipped[:3]) + (" ..." if len(ev.skipped) > 3 else ""))
    say(f"evaluation data: {desc}" + ("" if ev.labels is not None or o.data is None else " (no labels: agreement only)"))
    return ev, desc


def _timing_inputs(batch: int, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    from ..data import builtin_inputs

    x1 = builtin_inputs(1, size)
    xn = np.ascontiguousarray(np.resize(builtin_inputs(min(batch, 8), size), (batch, 3, size, size))) \
        if batch > 1 else None
    return x1, xn


def _jetson_power(o: BenchOptions, jinfo, say: Callable[[str], None]):
    """The Jetson's power sampler factory (None without rails), after recording its mode."""
    from . import env as envmod
    from . import jetson

    jinfo.nvpmodel = jetson.query_nvpmodel()
    jinfo.tensorrt = envmod.versions().get("tensorrt")
    if jinfo.clocks_locked is False:
        say(f"⚠️  Jetson clocks {jinfo.clocks_detail}: latency and power will vary")
    if jetson.PowerSampler(o.jetson_root).available:
        return lambda: jetson.PowerSampler(o.jetson_root)
    say("⚠️  no INA3221 rails in sysfs and no tegrastats: power not measured")
    return None


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
