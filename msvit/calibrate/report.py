"""The calibration report: ``report.md`` with three pictures (ROC with the chosen point, score
histograms per class with the threshold, reliability diagram before/after temperature scaling)
and ``report.json`` with every number. Matplotlib draws off-screen (Agg) with its config and
font cache in a private temp folder, never in $HOME."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..fileio import atomic_write, atomic_write_text
from . import stats

#: every picture's size in pixels (width, height) and its resolution
FIGSIZE_PX = (900, 600)
DPI = 100
PICTURES = {"roc": "roc.png", "histogram": "scores.png", "reliability": "reliability.png"}


@dataclass
class Outcome:
    """Everything msvit-calibrate found (the report and the published metadata read it)."""

    target_metric: str  # fpr | tpr
    target: float
    threshold: float | None  # None: refused (too few inputs)
    temperature: float
    real: np.ndarray  # P(fake) of the usable real inputs at ``temperature``
    fake: np.ndarray
    fpr: stats.Rate | None = None
    tpr: stats.Rate | None = None
    refused: str = ""  # why no threshold was chosen
    log_loss: dict[str, float] = field(default_factory=dict)  # before / after (temperature)
    ece: dict[str, float] = field(default_factory=dict)
    raw_real: np.ndarray | None = None  # the scores at temperature 1 (reliability "before")
    raw_fake: np.ndarray | None = None
    auc: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str, str, str]] = field(default_factory=list)  # (label, source, status, message)
    n_boot: int = 2000
    grouped: bool = False  # --group-by: intervals from the bootstrap over groups

    @property
    def ok(self) -> bool:
        return self.threshold is not None

    def method(self) -> str:
        """How the intervals were made, in one line (report and provenance)."""
        exact = "exact for independent inputs (order statistics: Clopper-Pearson; beta-binomial for a batch)"
        if self.grouped:
            return (f"95%, bootstrap of the whole procedure (choose the threshold, measure it) over groups, "
                    f"{self.n_boot} resamples; {exact.replace('for', 'for a class of', 1)}")
        return f"95%, {exact}"


@contextmanager
def private_matplotlib() -> Iterator[Any]:
    """pyplot on the Agg backend with MPLCONFIGDIR in a temp folder removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="msvit-mpl-")
    old = os.environ.get("MPLCONFIGDIR")
    os.environ["MPLCONFIGDIR"] = tmp
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        yield plt
    finally:
        if old is None:
            os.environ.pop("MPLCONFIGDIR", None)
        else:
            os.environ["MPLCONFIGDIR"] = old
        shutil.rmtree(tmp, ignore_errors=True)


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    plt.close(fig)


def _figure(plt: Any) -> tuple[Any, Any]:
    return plt.subplots(figsize=(FIGSIZE_PX[0] / DPI, FIGSIZE_PX[1] / DPI), dpi=DPI)


def draw_roc(plt: Any, o: Outcome, path: Path) -> None:
    fig, ax = _figure(plt)
    if len(o.fake):
        fpr, tpr, _ = stats.roc_curve(o.real, o.fake)
        ax.plot(fpr, tpr, color="C0", lw=2, label=f"ROC (AUC {o.auc:.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", ls="--", lw=1, label="chance")
    if o.ok and o.fpr is not None:
        y = o.tpr.value if o.tpr is not None else 0.0
        xerr = np.array([[o.fpr.value - o.fpr.low], [o.fpr.high - o.fpr.value]])
        yerr = None if o.tpr is None else np.array([[o.tpr.value - o.tpr.low], [o.tpr.high - o.tpr.value]])
        ax.errorbar([o.fpr.value], [y], xerr=xerr, yerr=yerr, fmt="o", color="C3", capsize=4,
                    label=f"chosen: threshold {o.threshold:.4g} (95% intervals)")
    if o.target_metric == "fpr":
        ax.axvline(o.target, color="C3", ls=":", lw=1)
    else:
        ax.axhline(o.target, color="C3", ls=":", lw=1)
    ax.set(xlabel="false-positive rate (real inputs called fake)", ylabel="true-positive rate (fakes caught)",
           xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), title="ROC on the calibration inputs")
    ax.legend(loc="lower right")
    _save(plt, fig, path)


def draw_histogram(plt: Any, o: Outcome, path: Path) -> None:
    fig, ax = _figure(plt)
    bins = np.linspace(0, 1, 41)
    ax.hist(o.real, bins=bins, alpha=0.6, color="C2", label=f"real ({len(o.real)})")
    if len(o.fake):
        ax.hist(o.fake, bins=bins, alpha=0.6, color="C3", label=f"fake ({len(o.fake)})")
    if o.ok:
        ax.axvline(o.threshold, color="k", lw=2, label=f"threshold {o.threshold:.4g}")
    ax.set(xlabel="P(fake)" + (f" (temperature {o.temperature:.3g})" if o.temperature != 1 else ""),
           ylabel="inputs", title="Scores per class")
    ax.legend(loc="upper center")
    _save(plt, fig, path)


def draw_reliability(plt: Any, o: Outcome, path: Path) -> None:
    fig, ax = _figure(plt)
    ax.plot([0, 1], [0, 1], color="0.7", ls="--", lw=1, label="perfectly calibrated")
    curves = [("before", o.raw_real, o.raw_fake, "C0")]
    if o.temperature != 1.0 or "after" in o.log_loss:
        curves.append((f"after (T = {o.temperature:.3g})", o.real, o.fake, "C3"))
    for name, r, f, c in curves:
        if r is None or f is None or not len(f) or not len(r):
            continue
        p = np.concatenate([r, f])
        y = np.concatenate([np.zeros(len(r)), np.ones(len(f))])
        mp, fy, n = stats.reliability(p, y)
        ok = n > 0
        ll = stats.log_loss(p, y)
        ax.plot(mp[ok], fy[ok], "o-", color=c, label=f"{name}: log loss {ll:.3f}, ECE {stats.expected_calibration_error(p, y):.3f}")
    if not len(o.fake):
        ax.text(0.5, 0.5, "needs fake inputs too (--fake)", ha="center", va="center")
    ax.set(xlabel="mean P(fake) in bin", ylabel="share of fakes in bin", xlim=(0, 1), ylim=(0, 1),
           title="Reliability (10 equal-width bins)")
    ax.legend(loc="upper left")
    _save(plt, fig, path)


def write_pictures(o: Outcome, out: Path) -> list[Path]:
    with private_matplotlib() as plt:
        paths = [out / PICTURES[k] for k in ("roc", "histogram", "reliability")]
        draw_roc(plt, o, paths[0])
        draw_histogram(plt, o, paths[1])
        draw_reliability(plt, o, paths[2])
    return paths


def summary_lines(o: Outcome) -> list[str]:
    """The result in a few lines under 100 columns (terminal and report)."""
    t = f"{o.target_metric.upper()} {100 * o.target:g}%"
    if not o.ok:
        return [f"target {t}: no threshold chosen: {o.refused}"]
    lines = [f"threshold {o.threshold:.6g} for target {t}"
             + (f", temperature {o.temperature:.4g}" if o.temperature != 1 else "")]
    if o.fpr is not None:
        lines.append(f"  FPR {o.fpr.text()}")
    if o.tpr is not None:
        lines.append(f"  TPR {o.tpr.text()}")
    if o.auc is not None:
        lines.append(f"  AUC {o.auc:.4f}")
    if o.log_loss:
        lines.append("  log loss " + ", ".join(f"{k} {v:.4f}" for k, v in o.log_loss.items()))
    return lines


def markdown(o: Outcome, provenance: dict[str, Any], published: str) -> str:
    c = provenance.get("counts", {})
    lines = ["# Calibration report", "",
             f"Model: `{provenance.get('model', '?')}`; date {provenance.get('date', '?')}; msvit "
             f"{provenance.get('msvit_version', '?')}.", "",
             f"Inputs: {c.get('real', 0)} real and {c.get('fake', 0)} fake with a score; {c.get('skipped', 0)} "
             f"without one (listed below). Data sha256 `{provenance.get('data_sha256', '?')[:16]}…`.", "",
             "## Result", "", *[f"- {x.strip()}" for x in summary_lines(o)], ""]
    if o.ok:
        r = o.fpr or o.tpr
        lines += ["Each rate has two 95% intervals. *Long run*: the rate this threshold will have on new "
                  "footage like these inputs; it includes the threshold's own variability (another sample "
                  f"would have given another threshold). *Batch*: how many of {r.batch} new inputs of that "
                  "class it will flag or catch, that batch's own chance scatter included. "
                  f"Method: {o.method()}. "
                  + ("Inputs of one group (one clip) count together, as they are correlated. " if o.grouped else
                     "Every input counts as independent: give correlated ones (frames or crops of one clip) "
                     "a group with --group-by, or the intervals are too narrow. ")
                  + "Neither says anything about footage of another kind (other cameras, compression, "
                  "people, generators).", ""]
    lines += [f"Published: {published}", "", "## Pictures", "",
              "![ROC with the chosen point](roc.png)", "", "![Scores per class with the threshold](scores.png)", "",
              "![Reliability before/after temperature scaling](reliability.png)", "",
              "## Pipeline", "", "```json", json.dumps(provenance.get("pipeline", {}), indent=1), "```", ""]
    if o.failed:
        lines += ["## Inputs without a score", "", "| label | input | status | message |", "|---|---|---|---|"]
        lines += [f"| {lab} | `{Path(src).name}` | {st} | {msg.replace('|', '/')[:120]} |"
                  for lab, src, st, msg in o.failed]
        lines.append("")
    return "\n".join(lines)


def write_report(o: Outcome, provenance: dict[str, Any], out: Path, published: str) -> list[Path]:
    """report.md, report.json and the pictures into ``out`` (each file written whole)."""
    out.mkdir(parents=True, exist_ok=True)
    files = write_pictures(o, out)
    doc = {"provenance": provenance, "summary": summary_lines(o), "published": published,
           "failed": [dict(zip(("label", "source", "status", "message"), f)) for f in o.failed],
           "scores": {"real": [round(float(x), 6) for x in o.real], "fake": [round(float(x), 6) for x in o.fake]}}
    files.append(atomic_write_text(out / "report.json", json.dumps(doc, indent=1) + "\n"))
    files.append(atomic_write_text(out / "report.md", markdown(o, provenance, published)))
    return files
