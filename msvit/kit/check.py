"""Comparing a run against a kit, stage by stage, in pipeline order; the first stage that departs
is named. Tolerances come from the kit (never from this code)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..predict import iou
from .schema import Case, Frame, Kit, KitError, load, read_png

STAGES = ("decode", "sample", "detect", "select", "crop_box", "letterbox", "normalize", "classify", "aggregate",
          "end_to_end")
DETECTOR_INPUT = {"blazeface": 192, "blazeface-short": 128}
MATCH_IOU = 0.5  # a run face is "the same face" as a kit face above this IoU


@dataclass
class StageFailure:
    """Where a run departs from the kit."""

    case: str
    frame: int | None  # frame index, or None for a case-level stage
    stage: str
    what: str
    kit: Any = None
    run: Any = None
    tolerance: Any = None

    def line(self) -> str:
        where = self.case + ("" if self.frame is None else f" frame {self.frame}")
        return f"{self.stage}: {where}: {self.what}"


@dataclass
class StageTally:
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def verdict(self) -> str:
        return "fail" if self.failed else "pass" if self.passed else "skipped"


@dataclass
class CheckReport:
    """What :func:`check` found: per-stage tallies and every failure, earliest stage first."""

    stages: dict[str, StageTally] = field(default_factory=lambda: {s: StageTally() for s in STAGES})
    failures: list[StageFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cases: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> StageFailure | None:
        """The failure at the earliest pipeline stage (first case among equals)."""
        if not self.failures:
            return None
        return min(self.failures, key=lambda f: STAGES.index(f.stage))

    @property
    def first_stage(self) -> str | None:
        f = self.first_failure
        return f.stage if f else None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "first_stage": self.first_stage, "cases": self.cases,
                "stages": {k: {**asdict(v), "verdict": v.verdict} for k, v in self.stages.items()},
                "failures": [asdict(f) for f in self.failures], "notes": self.notes}

    def summary(self) -> str:
        rows = [f"{'stage':<11} {'verdict':<8} {'pass':>5} {'fail':>5} {'skip':>5}"]
        rows += [f"{k:<11} {v.verdict:<8} {v.passed:>5} {v.failed:>5} {v.skipped:>5}" for k, v in self.stages.items()]
        if self.passed:
            rows.append(f"PASS: {self.cases} cases conform to the kit")
        else:
            rows.append(f"FAIL at stage {self.first_stage}: {self.first_failure.line()}")
            rows += [f"  {f.line()}" for f in self.failures[:10] if f is not self.first_failure]
            if len(self.failures) > 11:
                rows.append(f"  ... {len(self.failures) - 11} more failures")
        rows += [f"note: {n}" for n in self.notes]
        return "\n".join(rows)


class _Checker:
    def __init__(self, kit: Kit, run: Kit) -> None:
        self.kit, self.run, self.rep = kit, run, CheckReport(cases=len(kit.cases))
        self.tol = {k: v.value for k, v in kit.tolerances.items()}
        missing = {"box_px", "score", "crop_box_px", "crop_max_abs", "crop_mean_abs", "tensor_stat", "p_fake",
                   "decode_mean_abs"} - set(self.tol)
        if missing:
            raise KitError(f"the kit has no tolerance for {', '.join(sorted(missing))}")
        self.det_input = DETECTOR_INPUT.get(kit.settings.get("face_detector"), 192)

    def ok(self, stage: str) -> None:
        self.rep.stages[stage].passed += 1

    def skip(self, stage: str) -> None:
        self.rep.stages[stage].skipped += 1

    def fail(self, stage: str, case: Case, frame: Frame | None, what: str, kit: Any = None, run: Any = None,
             tol: Any = None) -> None:
        self.rep.stages[stage].failed += 1
        self.rep.failures.append(StageFailure(case.id, None if frame is None else frame.index, stage, what, kit, run, tol))

    # ------------------------------------------------------------------ per frame
    def frame(self, case: Case, k: Frame, r: Frame) -> None:
        px = self.tol["box_px"] * max(case.width or 0, case.height or 0) / self.det_input
        self.decode(case, k, r)
        self.detect(case, k, r, px)
        self.select(case, k, r, px)
        if k.crop_box is not None and r.crop_box is not None:
            tol = self.tol["crop_box_px"] * max(case.width or 0, case.height or 0) / self.det_input + 1
            d = float(np.abs(np.subtract(k.crop_box, r.crop_box)).max())
            (self.ok("crop_box") if d <= tol else
             self.fail("crop_box", case, k, f"crop box off by {d:g} px (tolerance {tol:.1f})", k.crop_box, r.crop_box, tol))
        else:
            self.skip("crop_box")
        self.letterbox(case, k, r)
        self.normalize(case, k, r)
        if k.p_fake is not None and r.p_fake is not None:
            d = abs(k.p_fake - r.p_fake)
            (self.ok("classify") if d <= self.tol["p_fake"] else
             self.fail("classify", case, k, f"|ΔP| {d:.4f} on the kit's crop (tolerance {self.tol['p_fake']:g})",
                       k.p_fake, r.p_fake, self.tol["p_fake"]))
        else:
            self.skip("classify")

    def decode(self, case: Case, k: Frame, r: Frame) -> None:
        if not r.rgb_sha256 or not k.rgb_sha256:
            return self.skip("decode")
        if r.rgb_sha256 == k.rgb_sha256:
            return self.ok("decode")
        if not r.file:
            return self.fail("decode", case, k, "decoded frame differs (rgb_sha256) and the run gives no frame file "
                                                "to measure by how much", k.rgb_sha256, r.rgb_sha256)
        a, b = read_png(self.kit.path(k.file)), read_png(self.run.path(r.file))
        if a.shape != b.shape:
            return self.fail("decode", case, k, f"frame size {b.shape[1]}x{b.shape[0]}, kit {a.shape[1]}x{a.shape[0]}")
        d = float(np.abs(a.astype(np.int16) - b).mean())
        tol = self.tol["decode_mean_abs"]
        self.ok("decode") if d <= tol else self.fail("decode", case, k, f"decoded frame mean |Δ| {d:.2f} grey levels "
                                                                           f"(tolerance {tol:g})", None, d, tol)

    def detect(self, case: Case, k: Frame, r: Frame, px: float) -> None:
        if r.detections is None or k.detections is None:
            return self.skip("detect")
        ct = self.kit.settings.get("conf_thres", 0.5)
        kd = [d for d in k.detections if d.score >= ct]
        rd = [d for d in r.detections if d.score >= ct]
        used = set()
        for d in kd:
            best = max(((iou(d.box, x.box), j) for j, x in enumerate(rd) if j not in used), default=(0.0, -1))
            if best[0] < MATCH_IOU:
                return self.fail("detect", case, k, f"kit face {_box(d.box)} (score {d.score:.3f}) not found",
                                 d.box, [x.box for x in rd])
            x = rd[best[1]]
            used.add(best[1])
            off = float(np.abs(np.subtract(d.box, x.box)).max())
            if off > px:
                return self.fail("detect", case, k, f"face box off by {off:.2f} px (tolerance {px:.2f} px): kit "
                                                    f"{_box(d.box)}, run {_box(x.box)}", d.box, x.box, px)
            if abs(d.score - x.score) > self.tol["score"]:
                return self.fail("detect", case, k, f"face score {x.score:.4f}, kit {d.score:.4f} (tolerance "
                                                    f"{self.tol['score']:g})", d.score, x.score, self.tol["score"])
        extra = [x for j, x in enumerate(rd) if j not in used]
        if extra:
            return self.fail("detect", case, k, f"{len(extra)} face(s) the kit does not have, e.g. {_box(extra[0].box)} "
                                                f"(score {extra[0].score:.3f})", None, extra[0].box)
        self.ok("detect")

    def select(self, case: Case, k: Frame, r: Frame, px: float) -> None:
        if r.status is None:
            return self.skip("select")
        if r.status != k.status:
            return self.fail("select", case, k, f"status {r.status}, kit {k.status}", k.status, r.status)
        if k.face is not None and r.face is not None:
            off = float(np.abs(np.subtract(k.face.box, r.face.box)).max())
            if off > px:
                return self.fail("select", case, k, f"chose the face at {_box(r.face.box)}, kit {_box(k.face.box)}",
                                 k.face.box, r.face.box, px)
        self.ok("select")

    def letterbox(self, case: Case, k: Frame, r: Frame) -> None:
        if k.crop is None or r.crop is None or not r.crop.rgb_sha256:
            return self.skip("letterbox")
        if r.crop.rgb_sha256 == k.crop.rgb_sha256:
            return self.ok("letterbox")
        if not r.crop.file:
            return self.fail("letterbox", case, k, "letterboxed crop differs (rgb_sha256) and the run gives no crop "
                                                   "PNG to measure by how much", k.crop.rgb_sha256, r.crop.rgb_sha256)
        a, b = read_png(self.kit.path(k.crop.file)), read_png(self.run.path(r.crop.file))
        if a.shape != b.shape:
            return self.fail("letterbox", case, k, f"crop is {b.shape[1]}x{b.shape[0]}, kit {a.shape[1]}x{a.shape[0]}")
        d = np.abs(a.astype(np.int16) - b)
        mx, mn = int(d.max()), float(d.mean())
        if mx > self.tol["crop_max_abs"] or mn > self.tol["crop_mean_abs"]:
            return self.fail("letterbox", case, k, f"crop max |Δ| {mx}, mean |Δ| {mn:.3f} grey levels (tolerance "
                                                   f"{self.tol['crop_max_abs']:g}, {self.tol['crop_mean_abs']:g})",
                             None, [mx, round(mn, 4)], [self.tol["crop_max_abs"], self.tol["crop_mean_abs"]])
        self.ok("letterbox")

    def normalize(self, case: Case, k: Frame, r: Frame) -> None:
        if k.tensor is None or r.tensor is None:
            return self.skip("normalize")
        if r.tensor.sha256 == k.tensor.sha256:
            return self.ok("normalize")
        dm = float(np.abs(np.subtract(k.tensor.mean, r.tensor.mean)).max())
        ds = float(np.abs(np.subtract(k.tensor.std, r.tensor.std)).max())
        tol = self.tol["tensor_stat"]
        if max(dm, ds) > tol:
            return self.fail("normalize", case, k, f"model input channel mean off by {dm:.4f}, std by {ds:.4f} "
                                                   f"(tolerance {tol:g}): kit mean {_v(k.tensor.mean)}, run "
                                                   f"{_v(r.tensor.mean)}", k.tensor.mean, r.tensor.mean, tol)
        self.ok("normalize")

    # ------------------------------------------------------------------ per case
    def case(self, k: Case, r: Case | None) -> None:
        if r is None:
            self.fail("sample", k, None, "case missing from the run")
            return
        if k.kind == "video":
            ki, ri = [f.index for f in k.frames], [f.index for f in r.frames]
            if ki != ri:
                self.fail("sample", k, None, f"sampled frames {ri[:8]}{'...' if len(ri) > 8 else ''}, kit {ki[:8]}"
                                             f"{'...' if len(ki) > 8 else ''}", ki, ri)
            else:
                self.ok("sample")
        else:
            self.skip("sample")
        rf = {f.index: f for f in r.frames}
        for kf in k.frames:
            if kf.index in rf:
                self.frame(k, kf, rf[kf.index])
        tol = self.tol["p_fake"]
        thr = self.kit.settings.get("threshold", 0.5)
        if k.p_fake is None or r.p_fake is None:
            if k.p_fake is None and r.p_fake is None:
                self.ok("aggregate")
            else:
                self.fail("aggregate", k, None, f"P(fake) {r.p_fake}, kit {k.p_fake} (one of them has no face)",
                          k.p_fake, r.p_fake)
        else:
            d = abs(k.p_fake - r.p_fake)
            if d > tol:
                self.fail("aggregate", k, None, f"|ΔP| {d:.4f} (tolerance {tol:g})", k.p_fake, r.p_fake, tol)
            elif r.verdict != k.verdict and abs(k.p_fake - thr) > tol:
                self.fail("aggregate", k, None, f"verdict {r.verdict}, kit {k.verdict}", k.verdict, r.verdict)
            else:
                if r.verdict != k.verdict:
                    self.rep.notes.append(f"{k.id}: verdict {r.verdict} vs kit {k.verdict} allowed: the kit's P "
                                          f"{k.p_fake:.4f} is within {tol:g} of the threshold {thr:g} (borderline)")
                self.ok("aggregate")
        if r.p_fake_e2e is None or k.p_fake is None:
            self.skip("end_to_end")
        else:
            d = abs(k.p_fake - r.p_fake_e2e)
            (self.ok("end_to_end") if d <= tol else
             self.fail("end_to_end", k, None, f"|ΔP| {d:.4f} of the run's whole pipeline (tolerance {tol:g})",
                       k.p_fake, r.p_fake_e2e, tol))


def _box(b) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in b) + "]"


def _v(v) -> str:
    return "[" + ", ".join(f"{x:.4f}" for x in v) + "]"


def check(kit: str | os.PathLike | Kit, run: str | os.PathLike | Kit) -> CheckReport:
    """Compare ``run`` (a run JSON, or a second kit) against ``kit`` stage by stage (docs/kit.md).
    KitError when either cannot be read or the kit is not a kit."""
    kit, run = load(kit), load(run)
    if kit.kind != "kit":
        raise KitError(f"the first document must be a kit (kind 'kit'), got kind {kit.kind!r}")
    c = _Checker(kit, run)
    for k in kit.cases:
        c.case(k, run.case(k.id))
    return c.rep
