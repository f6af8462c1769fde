"""``--precision auto``: the fastest assignment of precisions to the layer groups that the
target's own runtime *measures* on this host while the accuracy guard holds.

The candidates are few and real builds (each costs minutes on a small CPU): fp32 (the
baseline every speed-up is over), the reduced float precision the runtime executes here
(bf16/fp16), the guarded INT8 plan (its sensitive groups in float: :func:`msvit.quantize.run_int8`),
and the INT8 plan with its float groups in bf16 where the runtime executes bf16 (OpenVINO on
AVX512-BF16/AMX). Each is exported and judged by the same guard as ``--precision int8``;
the passing ones are timed interleaved (batch 1, the target's runtime) and the fastest wins.

An artifact meant for another device (``device_class="phone"``: XNNPACK int8 kernels) cannot
be timed here: then the passing candidate with the largest share of MACs in the device's fast
precision (int8) wins, and the record says it was not timed.

:func:`choose` is the search itself, pure over (candidates, guard, timing, share), so tests
inject timings; :func:`export_auto` wires it to real exports.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Generic, Sequence, TypeVar

from ..errors import ExportError, UsageError
from ..runtime.precision import can_execute
from .targets import TARGETS, exec_precision

#: where the artifact will run: ``host`` (this machine: timed) or a device msvit cannot time here
DEVICE_CLASSES = ("host", "phone")
#: targets ``auto`` can build and judge (TensorRT needs the GPU to build; Core ML runs on Apple only)
AUTO_TARGETS = ("onnx", "openvino", "executorch", "litert", "ort")
#: targets whose artifacts a phone runs (XNNPACK int8 / ONNX Runtime Mobile)
PHONE_TARGETS = ("executorch", "litert", "ort", "onnx")

C = TypeVar("C")


@dataclass(frozen=True)
class Candidate:
    """One precision assignment: ``precision`` is what the artifact is exported as (its INT8
    groups come from the guarded plan), ``exec_precision`` the float arithmetic of every
    group not in int8."""

    precision: str
    exec_precision: str = "fp32"

    @property
    def name(self) -> str:
        if self.precision == "int8":
            return "int8" if self.exec_precision == "fp32" else f"int8+{self.exec_precision}"
        return self.precision


@dataclass
class Trial(Generic[C]):
    candidate: C
    passed: bool
    ms: float | None = None  # measured latency (None: not timed)
    share: float | None = None  # share of MACs in the device's fast precision


@dataclass
class AutoChoice(Generic[C]):
    best: Trial
    baseline: Trial  # the first candidate (fp32): what speed-ups are over
    trials: list[Trial] = field(default_factory=list)
    timed: bool = True

    @property
    def speedup(self) -> float | None:
        if not self.timed or not self.best.ms or not self.baseline.ms:
            return None
        return self.baseline.ms / self.best.ms


#: a later (less exact) candidate must beat an earlier one by more than this to be chosen:
#: timings on a shared CPU wobble by a few percent, and a tie is no reason to give up accuracy
MIN_GAIN = 0.03


def choose(candidates: Sequence[C], guard: Callable[[C], bool], timing: Callable[[Sequence[C]], list[float]] | None,
           share: Callable[[C], float] | None = None, min_gain: float = MIN_GAIN) -> AutoChoice:
    """The fastest candidate that passes ``guard``.

    ``candidates`` go from the most exact to the least (fp32 first: the baseline, kept even
    if its guard fails, it is what the model is). ``timing(passing)`` returns one latency per
    passing candidate (one call: the real one times them interleaved); the earliest passing
    candidate within ``min_gain`` of the fastest wins. Without ``timing`` (a device not timed
    here) the passing candidate with the largest ``share`` wins; ties go to the earlier one."""
    if not candidates:
        raise ValueError("no candidates")
    trials = [Trial(c, bool(guard(c)) or i == 0) for i, c in enumerate(candidates)]
    passing = [t for t in trials if t.passed]
    if share is not None:
        for t in trials:
            t.share = float(share(t.candidate)) if t.passed else None
    if timing is not None:
        for t, ms in zip(passing, timing([t.candidate for t in passing])):
            t.ms = float(ms)
        fastest = min(t.ms for t in passing)
        best = next(t for t in passing if t.ms <= fastest * (1 + min_gain))
    else:
        if share is None:
            raise ValueError("untimed choice needs share()")
        best = max(passing, key=lambda t: (t.share, -passing.index(t)))
    return AutoChoice(best, trials[0], trials, timed=timing is not None)


def candidates_for(target: str, device_class: str, calib_given: bool) -> tuple[list[Candidate], list[str]]:
    """The candidates worth building for ``target`` here, and why others were left out."""
    t = TARGETS[target]
    out, skipped = [Candidate("fp32")], []
    floats = [p for p in ("bf16", "fp16") if p in t.precisions and exec_precision(target, p) == p]
    if device_class == "host":
        for p in floats:
            ok, why = can_execute(target, p)
            (out.append(Candidate(p, p)) if ok else skipped.append(f"{p}: {why}"))
    if "int8" in t.precisions:
        if not calib_given:
            skipped.append("int8: no --calib-data given")
        else:
            out.append(Candidate("int8"))
            if device_class == "host" and target == "openvino":
                ok, _ = can_execute(target, "bf16")
                (out.append(Candidate("int8", "bf16")) if ok else skipped.append("int8+bf16: as bf16"))
    return out, skipped


def check_auto(target: str, device_class: str) -> None:
    """Before any work: auto is for the targets it can build and judge here."""
    if device_class not in DEVICE_CLASSES:
        raise UsageError(f"--device-class {device_class!r}: use one of {', '.join(DEVICE_CLASSES)}")
    if target not in AUTO_TARGETS:
        raise UsageError(f"--precision auto is not available for {target}: it is for {', '.join(AUTO_TARGETS)} "
                         f"(pass --precision {', '.join(TARGETS[target].precisions)} for {target})")
    if device_class == "phone" and target not in PHONE_TARGETS:
        raise UsageError(f"--device-class phone: {target} artifacts do not run on phones; use "
                         f"{', '.join(PHONE_TARGETS)}")


def time_sessions(paths: Sequence[Path], threads: int = 2, rounds: int = 5, iters: int = 10,
                  warmup: int = 3) -> list[float]:
    """Median batch-1 latency (ms) of each artifact in its runtime, interleaved: each round runs
    every artifact ``iters`` times, so drift on a shared host falls on all of them alike."""
    import numpy as np

    from .. import runtime

    sessions = [runtime.load(p, threads=threads) for p in paths]
    try:
        xs = [np.random.default_rng(0).standard_normal((1, 3, s.input_size, s.input_size)).astype(np.float32)
              for s in sessions]
        for s, x in zip(sessions, xs):
            for _ in range(warmup):
                s.run(x)
        samples: list[list[float]] = [[] for _ in sessions]
        for _ in range(rounds):
            for i, (s, x) in enumerate(zip(sessions, xs)):
                for _ in range(iters):
                    t0 = time.perf_counter()
                    s.run(x)
                    samples[i].append(1e3 * (time.perf_counter() - t0))
        return [float(np.median(v)) for v in samples]
    finally:
        for s in sessions:
            s.close()


def _fast_share(res: Any) -> float:
    """Share of MACs in the phone's fast precision (int8) of an export result."""
    return float(res.extra.get("int8_mac_share", 0.0)) if res is not None and res.precision == "int8" else 0.0


def _guard_text(g: dict[str, Any]) -> str:
    vs = "" if g.get("reference", "fp32") == "fp32" else f" vs {g['reference']}"
    s = f"{g.get('test') or 'tail'}: max|ΔP|{vs} {g['max_abs_dprob']:.3f}"
    if g.get("floor"):
        s += f" (floor {g['floor']['max_abs_dprob']:.3f}), {g['flips']} flips (floor {g['floor']['flips']})"
    else:
        s += f" (bound {g['bound_dprob']:.3f}), agreement {g['agreement']:.3f}"
    return s + (f", AUC drop {g['auc_drop']:.4f}" if g.get("auc_drop") is not None else "")


def _summary(res: Any) -> str:
    """Each test that judged the candidate, with its figures (int8+bf16: INT8's, then bf16's)."""
    if res is None:
        return "not built"
    parts = [_guard_text(g) for g in (res.extra.get("guard"), res.extra.get("float_guard")) if g]
    if parts:
        return "; ".join(parts)
    return res.parity.summary() if res.parity else res.message


def _test(res: Any) -> str | None:
    """Which test(s) judged the candidate (manifest ``guard_test``): fp32 has none but parity."""
    return None if res is None else res.extra.get("guard_test") or ("parity" if res.parity else None)


def export_auto(model: Any, target: str, out_dir: str | Path, *, device_class: str = "host", threads: int = 2,
                calib: Any = None, log: Callable[[str], None] | None = print, export_fn: Callable[..., Any],
                **kw: Any) -> Any:
    """Build every candidate in a private folder, judge, time, publish the winner as
    ``<stem>_auto`` with its choice recorded (metadata: ``precision_choice``, ``precision_assignment``;
    manifest: every candidate's guard figures and ms, the speed-up over FP32)."""
    from ..errors import OutputExistsError
    from ..fileio import make_temp_dir
    from .request import artifact_stem
    from .card import card_markdown
    from .core import existing_outputs, publish, write_json_atomic

    check_auto(target, device_class)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cands, skipped = candidates_for(target, device_class, calib is not None)
    if log:
        log(f"auto {target} ({device_class}): candidates {', '.join(c.name for c in cands)}"
            + (f"; not tried: {'; '.join(skipped)}" if skipped else ""))
    work = make_temp_dir(out_dir)
    options = kw.pop("options", None)
    opts = replace(options, overwrite=True) if options is not None else None
    stem = artifact_stem(model, "auto", kw.get("batch", 1), kw.get("dynamic_batch", False),
                         options.input if options is not None else "tensor")
    results: dict[Candidate, Any] = {}
    try:
        for i, c in enumerate(cands):
            d = work / str(i)
            meta = {"precision_choice": "auto", "device_class": device_class, "exec_precision": c.exec_precision,
                    "precision_assignment": c.name}
            try:
                results[c] = export_fn(model, target, c.precision, d, calib=calib,
                                       options=opts, log=log, strict=False, stem=stem, metadata=meta, **kw)
            except ExportError as e:  # a candidate that cannot be built is a failed candidate
                if log:
                    log(f"  auto: {c.name} not built ({e})")

        def guard(c: Candidate) -> bool:
            r = results.get(c)
            return r is not None and r.ok

        def timing(cs: Sequence[Candidate]) -> list[float]:
            if log:
                log(f"  auto: timing {', '.join(c.name for c in cs)} interleaved ({threads} threads, batch 1)")
            return time_sessions([results[c].path for c in cs], threads)

        if Candidate("fp32") not in results:
            raise ExportError(f"auto {target}: the fp32 baseline could not be built (see the lines above)")
        choice = choose(cands, guard, timing if device_class == "host" else None,
                        share=lambda c: _fast_share(results.get(c)))
        best = results.get(choice.best.candidate)
        if best is None or best.path is None:
            raise ExportError(f"auto {target}: no candidate could be built (see the lines above)")
        record = {
            "device_class": device_class, "timed": choice.timed, "threads": threads if choice.timed else None,
            "chosen": choice.best.candidate.name, "speedup_vs_fp32": round(choice.speedup, 3) if choice.speedup else None,
            "not_tried": skipped,
            "candidates": [{"assignment": t.candidate.name, "precision": t.candidate.precision,
                            "exec_precision": t.candidate.exec_precision, "passed": t.passed,
                            "ms": round(t.ms, 3) if t.ms is not None else None,
                            "int8_mac_share": _fast_share(results.get(t.candidate)) if t.passed else None,
                            "test": _test(results.get(t.candidate)),
                            "guard": _summary(results.get(t.candidate))} for t in choice.trials],
        }
        ex = choice.best.candidate.exec_precision
        record["groups"] = {**{g: ex for g in best.extra.get("float_groups", [])},
                            **{g: "int8" for g in best.extra.get("quantized_groups", [])}} or {"all": ex}
        if not choice.timed:
            record["note"] = (f"not timed: the artifact is for a {device_class}; chosen for the largest share of "
                              "MACs in int8 under the guard")
        best.extra["auto"] = record
        staged_dir = best.path.parent
        manifest = staged_dir / f"{best.path.name}.json"
        doc = json.loads(manifest.read_text())
        doc["result"]["extra"]["auto"] = record
        doc["result"]["path"] = str(out_dir / best.path.name)
        write_json_atomic(manifest, doc)
        (staged_dir / f"{best.path.name}.md").write_text(
            card_markdown(best.path.name, doc["metadata"], doc["result"]))
        staged = [staged_dir / Path(f).name for f in doc["result"]["files"]] + [manifest,
                                                                                staged_dir / f"{best.path.name}.md"]
        taken = existing_outputs(out_dir, [f.name for f in staged])
        if taken and options is not None and not options.overwrite:
            raise OutputExistsError(f"{', '.join(p.name for p in taken)} already exist(s) in {out_dir}: pass "
                                    "--overwrite to replace (nothing was published)")
        publish(staged, out_dir)
        best.path = out_dir / best.path.name
        best.files = [out_dir / Path(f).name for f in doc["result"]["files"]]
        best.manifest, best.card = out_dir / manifest.name, out_dir / f"{best.path.name}.md"
        best.precision = "auto"
        best.message = auto_line(record)
        if log:
            log(best.message)
        return best
    finally:
        shutil.rmtree(work, ignore_errors=True)


def auto_line(record: dict[str, Any]) -> str:
    """One line: the choice, its speed-up (or why untimed) and each candidate's figures."""
    su = record.get("speedup_vs_fp32")
    head = (f"auto chose {record['chosen']}" + (f": {su:.2f}x over fp32 measured here" if su else "")
            + ("" if record["timed"] else f" ({record.get('note')})"))
    parts = [f"{c['assignment']} {'✓' if c['passed'] else '✗'}" + (f" [{c['test']}]" if c.get("test") else "")
             + (f" {c['ms']:.2f} ms" if c["ms"] else "") for c in record["candidates"]]
    groups = record.get("groups", {})
    int8 = [g for g, p in groups.items() if p == "int8"]
    assign = (f"; int8: {', '.join(int8)}; rest {next((p for p in groups.values() if p != 'int8'), 'fp32')}"
              if int8 else "")
    return head + " · " + ", ".join(parts) + assign


__all__ = ["AUTO_TARGETS", "AutoChoice", "Candidate", "DEVICE_CLASSES", "Trial", "auto_line", "candidates_for",
           "check_auto", "choose", "export_auto", "time_sessions"]
