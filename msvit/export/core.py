"""The uniform export wrapper: checks, a private temp dir, timing, verification through
:mod:`msvit.runtime` (the same loader users and the benchmark have), one publish step for
the artifact and its manifest, one log line."""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from ..data import ImageSet, skipped_records
from ..errors import (AccuracyGuardError, ExportError, MsvitError, OutputExistsError, TargetUnavailableError,
                      UsageError, ValidationError)
from ..fileio import (PublishPlan, atomic_write_text, deferred_signals, disk_full, make_temp_dir, path_size,
                      publish_set, sweep_stale_temp)
from ..model.info import model_info
from ..quantize import CalibrationSet, Int8Job, Int8Options, Int8Result
from ..version import package_versions
from .card import card_markdown
from .targets import Target, exec_precision
from .validate import ParityReport, check, compare, default_atol


@dataclass
class ExportOptions:
    """Target settings beyond target/precision/shape (``msvit-export`` flags of the same names)."""

    with_prob: bool = False  # ONNX: a second output ``prob`` = sigmoid(logit)
    trt_version: str | None = None  # plan for TensorRT 10 or 11 (default: installed, else 10)
    max_batch: int = 16  # TensorRT optimisation-profile max with dynamic batch
    minimum_deployment_target: str | None = None  # Core ML (default iOS16; W8A8 needs iOS17)
    coreml_weights: str = "linear"  # Core ML int8-weights: linear | palettize
    input: str = "tensor"  # tensor: normalised float32 NCHW; image: letterboxed uint8 NHWC (normalised in the graph)
    int8: Int8Options = field(default_factory=Int8Options)
    #: each branch's class-activation tokens as extra outputs ``low_tokens``/``high_tokens``
    #: (logit unchanged), for gradient-free maps from the artifact alone (``msvit-explain``)
    explain_outputs: bool = False
    #: replace an artifact already under its final name (the API's default); ``msvit-export``
    #: passes False unless ``--overwrite``: then an existing file is an :class:`OutputExistsError`
    overwrite: bool = True


@dataclass
class ExportContext:
    """Everything a target function needs; targets write only inside ``work_dir``."""

    model: nn.Module
    target: Target
    precision: str
    out_dir: Path
    stem: str
    batch: int = 1
    dynamic_batch: bool = False
    opset: int = 18
    metadata: dict[str, str] = field(default_factory=dict)
    calib: CalibrationSet | None = None  # for int8
    options: ExportOptions = field(default_factory=ExportOptions)
    work_dir: Path = Path(".")
    log: Callable[[str], None] | None = print

    @property
    def img_size(self) -> int:
        return model_info(self.model).img_size

    def example(self) -> torch.Tensor:
        """An input of the exported graph's own kind (``options.input``)."""
        from ..runtime.base import example_input

        return example_input(self.model, self.batch, self.options.input)

    def graph_module(self) -> nn.Module:
        """What the writer exports: the model, or the model behind the image-input wrapper."""
        from .graph import graph_module

        return graph_module(self.model, self.options.input)

    def int8_job(self, metadata: dict[str, str] | None = None) -> Int8Job:
        return Int8Job(self.model, self.calib, self.options.int8, self.work_dir,
                       self.metadata if metadata is None else metadata, self.batch, self.log,
                       input_kind=self.options.input, graph=self.graph_module())


@dataclass
class TargetOutput:
    """What a target function produced (paths inside ``ctx.work_dir``). The wrapper verifies
    ``main`` by opening it with :func:`msvit.runtime.load`."""

    main: Path
    files: list[Path]
    extra: dict[str, Any] = field(default_factory=dict)
    atol: float | None = None  # override the precision's default tolerance
    note: str = ""
    unavailable: str = ""  # the final step cannot run here (e.g. no GPU): files still published
    failed: str = ""  # produced but a check failed (e.g. INT8 accuracy guard): published, marked failing

    @classmethod
    def int8(cls, main: Path, res: Int8Result, extra: dict[str, Any] | None = None) -> "TargetOutput":
        """INT8 artifacts are judged by the accuracy guard (decisions), not a logit atol."""
        return cls(main, res.files, extra={**res.info, **(extra or {})}, failed=res.failure, note=res.note)


@dataclass
class ExportResult:
    target: str
    precision: str
    status: str  # ok | failed | unavailable
    path: Path | None = None
    files: list[Path] = field(default_factory=list)
    size_bytes: int = 0
    seconds: float = 0.0
    parity: ParityReport | None = None
    verified: str = ""  # "ran" | "structure" | ""
    message: str = ""
    manifest: Path | None = None
    card: Path | None = None  # <artifact>.md: the input/output card for app developers
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def icon(self) -> str:
        return {"ok": "✅", "failed": "❎"}.get(self.status, "❌")

    def line(self) -> str:
        if self.status == "ok":
            par = f" · {self.parity.summary()}" if self.parity else (" · structure verified" if self.verified else "")
            card = f" · card {self.card.name}" if self.card else ""
            cov = self.int8_coverage()
            cov = f" · INT8 {cov}" if cov else ""
            return (f"✅ {self.target} {self.precision} {self.size_bytes / 1e6:.1f} MB in {self.seconds:.1f} s{par}{cov}"
                    f"{card}")
        return f"{self.icon} {self.target} {self.precision}: {self.message}"

    def int8_coverage(self) -> str:
        """"37.7% of MACs (18/104 layers)" for an INT8 artifact whose graph was measured, else ""."""
        e = self.extra
        if "int8_mac_share" not in e:
            return ""
        return f"{100 * float(e['int8_mac_share']):.1f}% of MACs ({e['int8_layers']}/{e['layers_total']} layers)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "precision": self.precision, "status": self.status,
            "path": str(self.path) if self.path else None, "files": [str(f) for f in self.files],
            "size_bytes": self.size_bytes, "seconds": round(self.seconds, 3),
            "parity": self.parity.to_dict() if self.parity else None, "verified": self.verified,
            "message": self.message, "extra": _jsonable(self.extra),
        }


def _jsonable(o: Any) -> Any:
    return json.loads(json.dumps(o, default=str))


def export_time() -> str:
    """UTC export time; honours SOURCE_DATE_EPOCH so builds can be byte-reproducible.
    A value that is not a whole number of seconds is a :class:`UsageError` (exit 2)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        t = datetime.now(timezone.utc)
    else:
        try:
            t = datetime.fromtimestamp(int(epoch), timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise UsageError(f"SOURCE_DATE_EPOCH={epoch[:40]!r} is not a time: set it to whole seconds since "
                             "1970-01-01 UTC (e.g. $(git log -1 --format=%ct)) or unset it") from None
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def backend_versions() -> dict[str, str]:
    return package_versions(("torch", "timm", "onnx", "onnxruntime", "onnxslim", "openvino", "nncf", "coremltools",
                             "executorch", "tensorrt"))


def build_metadata(model: nn.Module, target: Target, precision: str, batch: int, dynamic_batch: bool,
                   extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Self-description embedded in every artifact (flat str -> str, the lowest common format)."""
    from ..runtime.meta import common_metadata
    from ..version import __version__

    info = model_info(model)
    shape = (None if dynamic_batch else batch, 3, info.img_size, info.img_size)
    meta = {**common_metadata(info, target.name, precision, shape),
            "exec_precision": exec_precision(target.name, precision), "msvit_version": __version__,
            "exported_at": export_time()}
    meta.update({f"{k}_version": v for k, v in backend_versions().items()})
    if extra:
        meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON under a temp name and rename it into place (readers never see half a file)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


#: what this process has published, one entry per set ("x.onnx with its manifest and card in out"):
#: the interrupted-message of msvit-export says exactly this
PUBLISHED: list[str] = []


def published_summary() -> str:
    """"published X in D; nothing else" or "nothing was published" (for a Ctrl-C message)."""
    if not PUBLISHED:
        return "nothing was published"
    return f"published {'; '.join(PUBLISHED)} (each complete with its manifest); nothing else was published"


def publish(staged: list[Path], out_dir: Path) -> list[str]:
    """Publish ``[artifact files..., manifest, card]`` staged in one work folder into ``out_dir``
    (:func:`msvit.fileio.publish_set`: safe under SIGKILL, rolled back on an error; SIGINT/SIGTERM
    wait for it). Returns the names that replaced existing files."""
    *files, manifest, card = staged
    plan = PublishPlan(staged[0].parent, out_dir, [f.name for f in files], manifest.name, [card.name])
    with deferred_signals():
        replaced = publish_set(plan)
        PUBLISHED.append(f"{', '.join(plan.artifacts)} with its manifest and card in {out_dir}")
    return replaced


def existing_outputs(out_dir: Path, names: list[str]) -> list[Path]:
    """Which of the final ``names`` (and their ``.json`` manifests) already exist in ``out_dir``."""
    found = []
    for n in names:
        for cand in (out_dir / n, out_dir / f"{n}.json"):
            if (cand.exists() or cand.is_symlink()) and cand not in found:
                found.append(cand)
    return found


def _refuse_existing(found: list[Path], out_dir: Path) -> None:
    if found:
        raise OutputExistsError(f"{', '.join(p.name for p in found)} already exist(s) in {out_dir}: pass "
                                "--overwrite to replace (nothing was published)")


def _io_error(e: OSError, where: Path) -> ExportError:
    if e.errno == errno.ENOSPC:
        return ExportError(f"disk full while writing into {where}: nothing was published")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ExportError(f"cannot write into {where}: {e.strerror}")
    return ExportError(f"I/O error writing into {where}: {e.strerror or e}")


def _verify(ctx: ExportContext, out: TargetOutput, verify: ImageSet, res: "ExportResult") -> None:
    """Run the artifact through msvit.runtime and compare it with PyTorch (not on hosts where
    the format cannot run: then the target has verified its structure)."""
    from .. import runtime

    try:
        session = runtime.load(out.main)
    except TargetUnavailableError:
        res.verified = "structure"
        return
    with session, torch.no_grad():
        ref = ctx.model(torch.from_numpy(verify.x)).numpy()
        got = session.run(verify.x)
        ex = ctx.metadata.get("exec_precision")
        if ex in ("fp16", "bf16") and (ctx.precision in ("fp16", "bf16") or ex != exec_precision(ctx.target.name,
                                                                                                   ctx.precision)):
            out.failed = out.failed or _float_guard(ctx, session, verify, res)
    atol = out.atol if out.atol is not None else default_atol(ctx.precision, ref)
    res.parity = compare(ref, got, atol, data=verify.description)
    res.verified = "ran"


def _float_guard(ctx: ExportContext, session: Any, verify: ImageSet, res: "ExportResult") -> str:
    """Judge bf16/fp16 execution on the images INT8 would be judged on (every calibration image
    + --verify-data when calibration is given, else the verification images), by the float test
    (``--float-gate``: ``floor`` by default, see :func:`msvit.quantize.guard.float_gate`).

    An INT8 artifact whose float groups run in bf16 (``int8+bf16``) has had its INT8 plan judged
    by INT8's own guard (tail bound) with those groups in fp32; here only what bf16 adds is
    judged: |ΔP| and flips against the same artifact executed in fp32, AUC drop against FP32.
    Each error gets the test made for it: the INT8 tail bound would inflate bf16's rounding
    (0.032 measured -> 0.10-0.24 bound), and the floor test alone on the whole artifact would let
    INT8's clipping tail through on 75 images (it overfits them: issue 32). Returns why it
    failed, or ""."""
    from .. import runtime
    from ..quantize import verify_set
    from ..quantize.floor import noise_floor
    from ..quantize.guard import FLOOR, evaluate, float_gate, gate_info

    opts = ctx.options.int8
    ex = ctx.metadata["exec_precision"]
    gate = float_gate(opts.gate, opts.float_gate)
    if ctx.calib is not None:
        x, labels, name = verify_set(ctx.calib, opts.verify_data, ctx.img_size)
    else:
        x, labels, name = verify.x, verify.labels, verify.description
    if gate.uses_floor and gate.floor is None:  # the floor of these very images
        gate = gate.with_floor(noise_floor(ctx.model, x))
    ref = np.concatenate([ctx.model(torch.from_numpy(x[i:i + 32])).numpy() for i in range(0, len(x), 32)])
    mixed = ctx.precision not in ("fp16", "bf16")
    if mixed:  # the same artifact with its float groups in fp32: what the INT8 guard judged
        with runtime.load(session.path, exec_precision="fp32") as s32:
            base = s32.run(x)
        rep = evaluate(base, session.run, x, labels, gate, name, auc_reference=ref,
                       reference=f"{ctx.precision} in fp32")
        int8_test = res.extra.get("guard_test") or opts.gate.test
        res.extra.update({"float_guard": rep.to_dict(), "float_guard_passed": rep.passed,
                          "float_guard_test": rep.test, "guard_test": f"{int8_test}+{rep.test}",
                          **({"float_noise_floor_max_dprob": round(gate.floor.max_abs_dprob, 6),
                              "float_noise_floor_flips": gate.floor.flips} if gate.uses_floor else {})})
    else:
        rep = evaluate(ref, session.run, x, labels, gate, name)
        res.extra.update({"guard": rep.to_dict(), "guard_passed": rep.passed, **gate_info(gate),
                          "guard_test": rep.test, "guard_bound_dprob": round(rep.bound_dprob, 6), "guard_n": rep.n,
                          "guard_weakly_verified": rep.weakly_verified})
    if ctx.log:
        ctx.log(f"  {ex} guard, {rep.summary()}"
                + (" (floor: FP32's own change under input rounding)" if rep.test == FLOOR else ""))
    if rep.passed:
        return ""
    return f"{ex} accuracy guard failed: " + "; ".join(rep.reasons) + " (artifact kept, marked failing)"


def run_export(
    ctx: ExportContext,
    fn: Callable[[ExportContext], TargetOutput],
    verify: ImageSet,
    strict: bool = True,
) -> ExportResult:
    """Run one target end to end. Expected failures come back as a non-ok result
    (``strict=False``) or raise (``strict=True``); nothing half-written is left under a
    final name either way."""
    log = ctx.log
    t0 = time.perf_counter()
    res = ExportResult(ctx.target.name, ctx.precision, "failed")
    work = None
    try:
        ok, why = ctx.target.can_export_here()
        if not ok:
            raise TargetUnavailableError(why)
        try:
            ctx.out_dir.mkdir(parents=True, exist_ok=True)
            sweep_stale_temp(ctx.out_dir, log)  # what killed (SIGKILL) exports into this folder left
            work = make_temp_dir(ctx.out_dir)
        except OSError as e:
            raise _io_error(e, ctx.out_dir) from None
        ctx.work_dir = work
        try:
            out = fn(ctx)
        except OSError as e:
            raise _io_error(e, ctx.out_dir) from None
        except RuntimeError:  # C++ writers (OpenVINO: "basic_ios::clear: iostream error") lose the errno
            if disk_full(work):
                raise _io_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), ctx.out_dir) from None
            raise
        res.extra.update(out.extra)
        res.message = out.note
        _verify(ctx, out, verify, res)  # before anything is published
        res.seconds = time.perf_counter() - t0
        failed_parity = res.parity is not None and not res.parity.passed
        res.status = "failed" if (failed_parity or out.failed) else "ok"
        if failed_parity:
            res.message = f"parity check failed: {res.parity.summary()} (atol {res.parity.atol:g})"
        res.files = [ctx.out_dir / f.name for f in out.files]
        res.path = ctx.out_dir / out.main.name
        res.size_bytes = sum(path_size(f) for f in out.files)
        res.manifest = res.path.with_name(res.path.name + ".json")
        staged_manifest = work / res.manifest.name
        res.card = res.path.with_name(res.path.name + ".md")
        staged_card = work / res.card.name
        staged = [*out.files, staged_manifest, staged_card]
        taken = existing_outputs(ctx.out_dir, [f.name for f in staged])
        if not ctx.options.overwrite:
            _refuse_existing(taken, ctx.out_dir)
        try:  # manifest and card are staged beside the files and published with them, in one step
            result = {**res.to_dict(), "message": out.failed or res.message}
            write_json_atomic(staged_manifest, {"metadata": ctx.metadata, "result": result,
                                                "sha256": _sha256s(out.files),
                                                "data": _data_record(verify, ctx.calib)})
            atomic_write_text(staged_card, card_markdown(res.path.name, ctx.metadata, result))
            publish(staged, ctx.out_dir)
        except OSError as e:
            raise _io_error(e, ctx.out_dir) from None
        if taken and log:
            log(f"replaced the previous {', '.join(p.name for p in taken)} in {ctx.out_dir}")
        if failed_parity:
            check(res.parity)  # raises ToleranceError
        if out.failed:
            raise AccuracyGuardError(out.failed)
        if out.unavailable:
            raise TargetUnavailableError(out.unavailable)
    except MsvitError as e:
        res.seconds = time.perf_counter() - t0
        res.status = "unavailable" if isinstance(e, TargetUnavailableError) else "failed"
        res.message = str(e)
        if log:
            log(res.line())
        if strict:
            raise
        return res
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    if log:
        log(res.line())
    return res


def _data_record(verify: ImageSet, calib: CalibrationSet | None) -> dict[str, Any]:
    """What the manifest says about the images used: sources, counts and every skipped file."""
    rec: dict[str, Any] = {"verify": {"source": verify.source, "images": len(verify),
                                      "skipped": skipped_records(verify.skipped)}}
    if calib is not None:
        rec["calibration"] = {"source": calib.source, "images": len(calib.calib),
                              "holdout": len(calib.holdout) if calib.holdout is not None else 0,
                              "skipped": skipped_records(calib.skipped)}
    return rec


def _sha256s(files: list[Path]) -> dict[str, str]:
    from ..model.weights import sha256_file

    out = {}
    for f in files:
        if f.is_file():
            out[f.name] = sha256_file(f)
    return out


__all__ = ["ExportContext", "ExportOptions", "ExportResult", "TargetOutput", "ValidationError", "build_metadata",
           "existing_outputs", "publish", "published_summary", "run_export"]
