"""Report writers: rich terminal table, JSON (stable keys), Markdown, and a latency/accuracy plot."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .rows import ICONS, BenchReport, BenchRow


def _f(v: Any, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _ok(v: bool | None) -> str:
    return "-" if v is None else ("✅" if v else "❌")


#: the essential columns (fit 100 terminal columns); --wide adds the rest
NARROW = ("", "format", "prec", "p50 ms", "p99 ms", "±%", "speed-up", "AUC", "agree", "RT", "note")
#: terminal table: a longer note becomes a numbered line under the table
NOTE_INLINE = 24


def columns(rep: BenchReport, wide: bool = True) -> list[str]:
    n = rep.settings.get("batch", 1)
    labelled = rep.settings.get("labelled")
    if not wide:
        return [c for c in NARROW if c != "AUC" or labelled]
    cols = ["", "format", "prec", "dev", "MB", "p50 ms", "p90 ms", "p99 ms", "std", "±%", "img/s", "speed-up"]
    if n > 1:
        cols += [f"p50 ms @{n}", f"img/s @{n}"]
    cols += ["mem MB", "RT"]
    if labelled:
        cols += ["Acc", "AUC", "logloss", "TPR@1%", "TPR@5%"]
    cols += ["agree"]
    if any(r.threshold not in (None, 0.5) for r in rep.rows):  # a calibrated artifact: its own decisions too
        cols += ["thr", "agree@thr"]
    cols += ["max|ΔP|"]
    if any(r.power_w is not None for r in rep.rows):
        cols += ["W", "mJ/img"]
    if any(r.gpu_compute for r in rep.rows):
        cols += ["GPU ms"]
    return cols + ["note"]


def precision_label(r: BenchRow) -> str:
    """``int8 48%/bf16 auto``: precision, int8 share of MACs, execution precision, auto's choice."""
    prec = r.precision + (f" {100 * r.int8_mac_share:.0f}%" if r.int8_mac_share is not None else "")
    if r.exec_precision and r.exec_precision != r.precision:
        prec += f"/{r.exec_precision}"  # what the runtime executed the float ops in
    if r.precision_choice:
        prec += f" {r.precision_choice}"
    return prec


def cells(rep: BenchReport, r: BenchRow, wide: bool = True, note: str | None = None) -> list[str]:
    """The row's cells in :func:`columns` order; ``note`` replaces its note (a footnote number)."""
    n = rep.settings.get("batch", 1)
    L, LB = r.latency or {}, r.latency_batch or {}
    prec = precision_label(r)
    v = {"": r.icon, "format": r.name, "prec": prec, "dev": r.device, "MB": _f(r.size_mb, ".1f"),
         "p50 ms": _f(L.get("p50_ms")), "p90 ms": _f(L.get("p90_ms")), "p99 ms": _f(L.get("p99_ms")),
         "std": _f(L.get("std_ms")), "±%": _f(r.spread_pct, ".0f"), "img/s": _f(L.get("throughput"), ".1f"),
         "speed-up": _f(r.speedup, ".2f") + ("×" if r.speedup is not None else ""),
         f"p50 ms @{n}": _f(LB.get("p50_ms")), f"img/s @{n}": _f(LB.get("throughput"), ".1f"),
         "mem MB": _f(r.memory_peak_mb, ".0f"), "RT": _ok(r.realtime), "Acc": _f(r.accuracy, ".3f"),
         "AUC": _f(r.auc, ".3f"), "logloss": _f(r.log_loss, ".3f"), "agree": _f(r.agreement, ".3f"),
         "TPR@1%": _f(r.tpr_at_fpr1, ".3f"), "TPR@5%": _f(r.tpr_at_fpr5, ".3f"), "thr": _f(r.threshold, ".3g"),
         "agree@thr": _f(r.agreement_at_threshold, ".3f"),
         "max|ΔP|": _f(r.max_abs_dprob, ".1e"), "W": _f(r.power_w, ".2f"), "mJ/img": _f(r.energy_mj, ".1f"),
         "GPU ms": _f((r.gpu_compute or {}).get("median_ms")), "note": r.note if note is None else note}
    return [v[c] for c in columns(rep, wide)]


def compute_line(rep: BenchReport) -> str:
    c = rep.compute
    return (f"{c['model']} ({c['attn_mode']}) {c['input']}: {c['params'] / 1e6:.2f} M params, "
            f"{c['gmacs']:.3f} GMACs (fvcore 'FLOPs') = {c['gflops']:.3f} GFLOPs (2×MACs); "
            f"budget {c['budget_gmacs']:g} GMACs {c['icon']}")


def env_lines(rep: BenchReport) -> list[str]:
    e, s = rep.env, rep.settings
    gpu = e["gpu"]["name"] if e.get("gpu") else "none"
    v = ", ".join(f"{k} {val}" for k, val in e["versions"].items())
    lines = [f"CPU {e['cpu']} ({e['cpu_cores_physical']} physical / {e['cpu_cores_logical']} logical cores, "
             f"{e['cpu_cores_usable']} usable; int8 features: {', '.join(e.get('cpu_int8_features') or []) or 'none'})"
             f" · GPU {gpu} · {e['os']}",
             f"threads {s['threads']} (torch, ORT intra-op, OpenVINO"
             + (f"; {s['busy_cores']:.1f} cores busy elsewhere" if s.get("busy_cores") is not None
                and s.get("threads_auto") and s["busy_cores"] >= 0.5 else "") + f") · device {s['device']} · batch {s['batch']} · "
             f"{s['warmup']} warm-up + >= {s['iters']} runs interleaved in blocks of {s.get('block', 1)}"
             + (f" / >= {s['min_time']:g} s" if s['min_time'] else "")
             + (f" · other processes {rep.noise['foreign_cpu_pct']:.0f}% CPU"
                if rep.noise.get("foreign_cpu_pct") is not None else "")
             + f" · real-time budget {s['realtime_budget_ms']:.1f} ms (p99 @ {s['fps']:g} fps) · {e['date']}",
             f"data: {s['data']}", v]
    j = e.get("jetson")
    if j:
        pm = j.get("nvpmodel") or {}
        lines.append(f"Jetson {j['model']} · L4T {j['l4t']} · TensorRT {j.get('tensorrt')} · nvpmodel "
                     f"{pm.get('mode', '?')} · clocks {j['clocks_detail']}")
    return lines


@dataclass
class Footnotes:
    """Long table notes as numbered lines under the table (a row's note cell keeps its number):
    a note folded over three lines in a narrow column made every row three lines tall."""

    numbers: dict[str, int]

    def cell(self, note: str) -> str:
        return f"({self.numbers[note]})" if note in self.numbers else note

    def lines(self) -> list[str]:
        return [f"({n}) {note}" for note, n in self.numbers.items()]


def footnotes(notes: list[str], inline: int = NOTE_INLINE) -> Footnotes:
    """Number each distinct note longer than ``inline`` characters, in order of first use."""
    numbers: dict[str, int] = {}
    for note in notes:
        if len(note) > inline and note not in numbers:
            numbers[note] = len(numbers) + 1
    return Footnotes(numbers)


def print_table(rep: BenchReport, console: Any = None, wide: bool = False) -> None:
    """The terminal report: the essential columns in 100 terminal columns, or all with ``wide``."""
    from rich.console import Console
    from rich.table import Table

    term = Console()
    con = console or Console(width=max(200, term.width) if wide else (min(100, term.width) if term.is_terminal
                                                                       else 100))
    tab = Table(title="msvit-bench", caption=compute_line(rep), pad_edge=False, collapse_padding=True)
    for col in columns(rep, wide):
        tab.add_column(col, justify="left" if col in ("", "format", "prec", "dev", "note") else "right",
                       overflow="fold", max_width=60 if col == "note" else None, no_wrap=col != "note")
    from rich.markup import escape

    # rows that could not run have no figures: one line each under the table, not a row whose
    # note folds over five lines beside a dozen empty cells
    timed = [r for r in rep.rows if r.status != "unavailable"]
    notes = footnotes([r.note for r in timed])
    for r in timed:  # escape: notes carry "[...]" (pip extras) that rich would take for markup
        tab.add_row(*(escape(c) for c in cells(rep, r, wide, note=notes.cell(r.note))))
    for line in env_lines(rep):
        con.print(line, style="dim", highlight=False, overflow="fold", markup=False)
    con.print(tab)
    for line in notes.lines():
        con.print(line, highlight=False, overflow="fold", markup=False)
    for r in rep.rows:
        if r.status == "unavailable":
            con.print(f"{r.icon} {r.name} {r.precision}: {r.note}", highlight=False, markup=False)
    if rep.noise.get("warning"):
        con.print(rep.noise["warning"], style="bold yellow", highlight=False, markup=False)
    if rep.pipeline:
        con.print(pipeline_table(rep, wide))
        if any(r.overlap_fps is not None for r in rep.pipeline):
            con.print(overlap_table(rep))
    if any(r.int8_mac_share is not None for r in rep.rows):
        con.print("int8 N% = share of the multiply-adds the artifact runs in int8 (read off its graph)")
    if any(r.exec_precision and r.exec_precision != r.precision for r in rep.rows):
        con.print("prec/X = the artifact's execution precision: its float ops run in X (exec_precision)")
    con.print("±% = interquartile range of block medians; speed-up = PyTorch eager / row, per round of the interleaved run; "
              "RT = p99 within the real-time budget", style="dim", highlight=False)


def pipeline_table(rep: BenchReport, wide: bool = False):
    """End-to-end rows: sampled frames/s and ms per sampled frame for each stage."""
    from rich.table import Table

    s = rep.settings
    tab = Table(title=f"pipeline: {Path(s['pipeline']).name}, {s['pipeline_frames']} sampled frames, "
                      f"real time = >= {s['fps']:g} frames/s end to end", pad_edge=False, collapse_padding=True)
    cols = ["", "format", "prec", "frames/s", "e2e ms", "decode", "detect", "crop", "classify", "±%", "RT",
            "P(fake)"] + (["note"] if any(r.note for r in rep.pipeline) else [])
    for col in cols:
        tab.add_column(col, justify="left" if col in ("", "format", "prec", "note") else "right",
                       no_wrap=col != "note", overflow="fold")
    for r in rep.pipeline:
        m = r.ms_per_frame
        tab.add_row(ICONS.get(r.status, "❌"), r.name, r.precision, _f(r.fps, ".1f"), _f(r.e2e_ms_per_frame, ".1f"),
                    *(_f(m.get(k), ".1f") for k in ("decode", "detect", "crop", "classify")),
                    _f(r.spread_pct, ".0f"), _ok(r.realtime), _f(r.p_fake, ".3f"),
                    *([r.note] if "note" in cols else []))
    return tab


def _threads(t: dict) -> str:
    lanes = f"x{t['videos']}" if t and t.get("videos", 1) > 1 else ""
    return f"{t.get('decode') or 'auto'}{lanes}/{t.get('detect')}/{t.get('classify')}" if t else "—"


def overlap_table(rep: BenchReport):
    """The overlapped pipeline (msvit-predict's): sampled frames/s, videos/min, busy shares."""
    from rich.table import Table

    s = rep.settings
    rows = [r for r in rep.pipeline if r.overlap_fps is not None]
    hows = sorted({(r.stage_threads.get("source") or "").split(" (")[0] for r in rows})
    tab = Table(title=f"overlapped (msvit-predict): {s.get('pipeline_videos')} x {Path(s['pipeline']).name} back to "
                      "back", caption=f"busy = share of the wall time a stage worked (decode: per video decoded at once); "
                                      f"threads decode/detect/classify (auto: FFmpeg's choice; 1x2: 1 thread per "
                                      f"video, 2 videos at once), {', '.join(hows)}",
                pad_edge=False, collapse_padding=True)
    for col in ("", "format", "prec", "frames/s", "x seq", "videos/min", "decode", "detect", "classify", "threads"):
        tab.add_column(col, justify="left" if col in ("", "format", "prec", "threads") else "right", no_wrap=True)
    for r in rows:
        b = r.busy_share
        gain = r.overlap_fps / r.fps if r.fps else None
        tab.add_row(ICONS.get(r.status, "❌"), r.name, r.precision, _f(r.overlap_fps, ".1f"), _f(gain, ".2f"),
                    _f(r.videos_per_min, ".1f"), *(_pct(b.get(k)) for k in ("decode", "detect", "classify")),
                    _threads(r.stage_threads))
    return tab


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def write_json(rep: BenchReport, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rep.to_dict(), indent=2, default=str) + "\n")
    return p


MARKDOWN_HEADER = "# msvit-bench"


def to_markdown(rep: BenchReport) -> str:
    cols = columns(rep)
    out = [MARKDOWN_HEADER, "", f"**Compute:** {compute_line(rep)}", ""]
    out += [f"- {line}" for line in env_lines(rep)] + [""]
    if rep.noise.get("warning"):
        out += [f"> {rep.noise['warning']}", ""]
    out.append("| " + " | ".join(c or "status" for c in cols) + " |")
    out.append("|" + "|".join("---" if c in ("", "format", "prec", "dev", "note") else "---:" for c in cols) + "|")
    for r in rep.rows:
        out.append("| " + " | ".join(x.replace("|", "\\|") for x in cells(rep, r)) + " |")
    if rep.pipeline:
        out += ["", f"**Pipeline** ({rep.settings['pipeline']}, {rep.settings['pipeline_frames']} sampled frames; "
                "ms per sampled frame):", "",
                "| status | format | prec | frames/s | e2e ms | decode | detect | crop | classify | ±% | RT | P(fake) |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in rep.pipeline:
            m = r.ms_per_frame
            out.append(f"| {ICONS.get(r.status, '❌')} | {r.name} | {r.precision} | {_f(r.fps, '.1f')} | "
                       f"{_f(r.e2e_ms_per_frame, '.1f')} | " + " | ".join(_f(m.get(k), ".1f") for k in
                                                                      ("decode", "detect", "crop", "classify"))
                       + f" | {_f(r.spread_pct, '.0f')} | {_ok(r.realtime)} | {_f(r.p_fake, '.3f')} |")
    if any(r.overlap_fps is not None for r in rep.pipeline):
        out += ["", f"**Overlapped pipeline** (msvit-predict's; {rep.settings.get('pipeline_videos')} videos back to "
                "back; busy = share of the wall time each stage worked):", "",
                "| format | prec | frames/s | × sequential | videos/min | busy decode | busy detect | busy classify "
                "| threads d/t/c | chosen |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in rep.pipeline:
            if r.overlap_fps is None:
                continue
            b = r.busy_share
            out.append(f"| {r.name} | {r.precision} | {_f(r.overlap_fps, '.1f')} | "
                       f"{_f(r.overlap_fps / r.fps if r.fps else None, '.2f')} | {_f(r.videos_per_min, '.1f')} | "
                       + " | ".join(_pct(b.get(k)) for k in ("decode", "detect", "classify"))
                       + f" | {_threads(r.stage_threads)} | {r.stage_threads.get('source', '')} |")
    out += ["", "✅ ran and met its checks · ❎ exported but a check failed · ❌ not runnable here. "
            "Latency in ms at batch 1 unless marked; ±% = interquartile range of block medians; speed-up = PyTorch "
            "eager / row, median of per-round block ratios of one interleaved run; "
            "RT = p99 at batch 1 within the real-time budget.", ""]
    return "\n".join(out)


def write_markdown(rep: BenchReport, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(to_markdown(rep))
    return p


def write_plot(rep: BenchReport, path: str | os.PathLike) -> Path:
    """x: p50 latency at batch 1 (whisker p90–p99); y: AUC with labels, else agreement with FP32 torch."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on edge boxes and CI
    import matplotlib.pyplot as plt

    labelled = bool(rep.settings.get("labelled"))
    key, ylabel = ("auc", "ROC AUC") if labelled else ("agreement", "agreement with PyTorch FP32 @0.5")
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    pts = [r for r in rep.rows if r.latency and getattr(r, key) is not None]
    for i, r in enumerate(pts):
        L, y = r.latency, getattr(r, key)
        ax.hlines(y, L["p90_ms"], L["p99_ms"], colors="grey", linewidth=2, alpha=0.7)
        name = f"{r.name} {precision_label(r)}"  # the table's words: int8 48%/bf16 auto
        ax.plot([L["p50_ms"]], [y], "o", ms=8, label=name + ("" if r.status == "ok" else " (check failed)"))
        # rows often share y (same AUC): stagger labels so they do not print over each other
        ax.annotate(name, (L["p50_ms"], y), textcoords="offset points",
                    xytext=(6, 8 + 11 * (i % 4)), fontsize=8, arrowprops={"arrowstyle": "-", "lw": 0.5})
    budget = rep.settings.get("realtime_budget_ms", 1000.0 / 30)
    ax.axvline(budget, color="red", linestyle="--", linewidth=1,
               label=f"real-time budget {budget:.1f} ms ({rep.settings.get('fps', 30):g} fps)")
    ax.set_xlabel("latency at batch 1, ms (dot p50, bar p90–p99)")
    ax.set_ylabel(ylabel)
    c = rep.compute
    ax.set_title(f"msvit-bench · {c['model']} · {c['gmacs']:.3f} GMACs · {rep.env.get('cpu', '')[:40]}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.margins(y=0.25)  # room above the top row for its staggered label (under the title, not on it)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png")
    plt.close(fig)
    return p
