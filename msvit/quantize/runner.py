"""The one INT8 runner: method choice and validation, the sensitivity plan (cached), the
verification set, the guard loop, attempt clean-up, the info dict and where metadata goes.
Each backend contributes a small :class:`Int8Adapter`: its methods, what it can run faster
in int8 (``restrict``), how to build one attempt, and how to write the final artifact."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..errors import CalibrationError
from ..model.info import model_info
from ..model.weights import cache_dir
from ..runtime.base import example_input, flat_metadata, graph_feed
from ..runtime.coverage import Coverage
from .calib import CalibrationSet
from .floor import noise_floor
from .guard import DPROB_FLOOR, Gate, gate_info, quantize_with_guard
from .options import Int8Options
from .sensitivity import QuantPlan, analyse

#: Facts about a quantization *run* (cache state, per-attempt logs): manifest only, never
#: embedded, so the same inputs give the same artifact bytes.
RUN_ONLY_KEYS = ("attempts", "sensitivity", "plan_cache")


def weights_fingerprint(model: torch.nn.Module) -> str:
    sha = (model_info(model).weights_sha256 or None)
    if sha:
        return sha
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def plan_for(model: torch.nn.Module, calib: CalibrationSet, method: str, sensitivity_dprob: float,
             symmetric_act: bool, log: Callable[[str], None] | None = None,
             gate: Gate | None = None) -> tuple[QuantPlan, dict[str, Any]]:
    """Sensitivity plan, from the cache when weights, data, method, scheme and rule are unchanged.

    The plan's simulated |ΔP| is summarised by ``gate``'s bound for unseen images (the one
    the guard applies to the real artifact; the floor gate: the max), so its budget means the
    same thing."""
    from ..version import __version__

    gate = gate or Gate()
    key_src = json.dumps({"weights": weights_fingerprint(model), "data": calib.sha256, "method": method,
                          "symmetric_act": symmetric_act, "sensitivity_dprob": sensitivity_dprob,
                          "bound": gate.describe(), "dprob_floor": DPROB_FLOOR,
                          "attn_mode": model_info(model).attn_mode, "n": len(calib.calib), "msvit": __version__},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    path = cache_dir() / "quant" / f"plan-{key}.json"
    if path.is_file():
        try:
            return QuantPlan.from_dict(json.loads(path.read_text())), {"plan_cache": "hit", "plan_key": key}
        except (ValueError, TypeError):
            pass  # unreadable cache entry: recompute
    if log:
        log(f"  INT8 sensitivity analysis on {len(calib.calib)} calibration images ({method})...")
    plan = analyse(model, calib.calib.x, method=method, sensitivity_dprob=sensitivity_dprob,
                   symmetric_act=symmetric_act, progress=log is not None, bound=(lambda d: float(np.max(d))) if gate.uses_floor  # the floor gate judges the max
                   else (lambda d: gate.bound(d)["bound"]))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan.to_dict()))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs time
    return plan, {"plan_cache": "miss", "plan_key": key}


@contextmanager
def quiet_logger(name: str | None, level: int) -> Iterator[None]:
    """Raise one logger's level for the duration (quantizers log per op, or advice we already follow)."""
    lg = logging.getLogger(name)
    old = lg.level
    lg.setLevel(level)
    try:
        yield
    finally:
        lg.setLevel(old)


def verify_set(calib: CalibrationSet, verify_data: Any, size: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The guard's data: every calibration image (the held-out split *and* the images the ranges
    were computed on), plus ``verify_data`` when given.

    Calibrated ranges do not fit their own images measurably better than unseen ones
    (``research/guard_holdout.py``: |ΔP| on the calibration images and on 455 unseen frames
    agree, median, p90 and max), so verifying on the 20% held-out split alone threw away four
    fifths of the evidence: 15 images, whose max said 0.008 for an artifact that reached 0.057
    on eval/ (issue 14). The gate is applied to a bound for unseen images (:mod:`.guard`)."""
    from ..data import resolve_data

    parts = [calib.calib] + ([calib.holdout] if calib.holdout is not None else [])
    n_cal = sum(len(p) for p in parts)
    name = f"{n_cal} calibration images" + (f" ({len(calib.calib)} calibrated on, {len(calib.holdout)} held out)"
                                            if calib.holdout is not None else "")
    if verify_data is not None:
        extra = resolve_data(verify_data, size)
        parts.append(extra)
        name += f" + {extra.description}"
    x = np.concatenate([p.x for p in parts]) if len(parts) > 1 else parts[0].x
    labels = None
    if all(p.labels is not None for p in parts):
        labels = np.concatenate([p.labels for p in parts])
    return x, labels, name


@dataclass
class Int8Job:
    """What every backend's INT8 build needs (the export layer fills it from its context)."""

    model: torch.nn.Module
    calib: CalibrationSet
    options: Int8Options
    work_dir: Path  # attempts are built in sub-folders here and removed afterwards
    metadata: dict[str, str]  # the artifact's own metadata (INT8 facts are added to it)
    batch: int = 1
    log: Callable[[str], None] | None = print
    #: ``image``: the artifact takes letterboxed uint8 NHWC pixels (``graph`` wraps ``model`` with
    #: the cast and normalisation); calibration then feeds the pixels the app will feed
    input_kind: str = "tensor"
    graph: torch.nn.Module | None = None  # what is exported (default: ``model``)

    @property
    def img_size(self) -> int:
        return model_info(self.model).img_size

    @property
    def graph_module(self) -> torch.nn.Module:
        return (self.graph if self.graph is not None else self.model).eval()

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 NCHW images -> what the exported graph takes."""
        return graph_feed(x, self.input_kind)

    def example(self, batch: int) -> torch.Tensor:
        return example_input(self.model, batch, self.input_kind)


@dataclass
class Built:
    """One attempt: the file the guard runs, and whatever the adapter needs to write it out."""

    path: Path
    payload: Any = None


class Int8Adapter:
    """One backend's INT8 steps; :func:`run_int8` owns everything else."""

    target = ""  # for messages: onnx, openvino, ...
    methods: tuple[str, ...] = ("minmax",)
    default_method = "minmax"  # chosen by measurement on the face crops (docs/int8.md)
    symmetric_act = False  # the simulation mirrors the backend's activation scheme
    uses_plan = True  # False: the backend quantizes the whole network (no per-group fallback)
    int8_modules: tuple[type, ...] | None = None  # the layer types its kernels run faster in int8 (None: all)

    def __init__(self, job: Int8Job) -> None:
        self.job = job
        self.base_info: dict[str, Any] = {}  # tool, format, method, calibration: set by run_int8

    def restrict(self, plan: QuantPlan) -> QuantPlan:
        """The plan over the layers this backend really runs faster in int8."""
        if self.int8_modules is None:
            return plan
        return plan.restrict({n for n, m in self.job.model.named_modules() if isinstance(m, self.int8_modules)})

    def build(self, plan: QuantPlan, method: str, attempt_dir: Path) -> Built:
        raise NotImplementedError

    def describe(self, method: str) -> dict[str, Any]:
        """``quant_tool``, ``quant_format`` and any backend facts for the metadata."""
        return {}

    def coverage(self, built: Built) -> Coverage | None:
        """What share of the built graph's MACs and layers runs in int8 (None: not readable)."""
        return None

    def write(self, best: Built, out: Path, metadata: dict[str, str], info: dict[str, Any]) -> list[Path]:
        """Write the final artifact at ``out`` (metadata embedded); return every file it consists of."""
        raise NotImplementedError


@dataclass
class Int8Result:
    files: list[Path]
    info: dict[str, Any]  # for the manifest (run-only keys included)
    passed: bool
    failure: str = ""  # why the guard failed, when it did (the artifact is still written)
    note: str = field(default="")


def coverage_info(adapter: Int8Adapter, built: Built) -> dict[str, Any]:
    """``int8_mac_share``, ``int8_macs``, ``macs_total``, ``int8_layers``, ``layers_total`` of the
    chosen attempt, read off its graph: the plan says what was asked, this what the file holds."""
    try:
        cov = adapter.coverage(built)
    except Exception as e:  # a report, not a gate: never lose a guarded artifact over it
        warnings.warn(f"INT8 {adapter.target}: could not measure int8 coverage ({type(e).__name__}: {e})",
                      UserWarning, stacklevel=3)
        return {}
    if cov is None:
        return {}
    if adapter.job.log:
        adapter.job.log(f"  {cov.summary()}")
    return cov.info()


def int8_method(adapter: Int8Adapter, method: str) -> str:
    """The method's name, as the metadata records it (``int8_method``): what decides which
    layers are int8, and the calibration ranges (the tool and its version: ``quant_tool``)."""
    if adapter.uses_plan:
        return (f"selective PTQ: sensitivity plan, {method} ranges, accuracy guard returning the most sensitive "
                f"group to float on failure")
    return f"whole-network PTQ: {method} ranges, accuracy guard (no per-layer fallback)"


def run_int8(adapter: Int8Adapter, out: Path) -> Int8Result:
    """Plan, build, judge and write ``adapter``'s INT8 artifact at ``out``."""
    job, opts = adapter.job, adapter.job.options
    method = opts.calib_method or adapter.default_method
    if method not in adapter.methods:
        raise CalibrationError(f"--calib-method {method} is not available for {adapter.target}: use "
                               + " or ".join(adapter.methods))
    log = job.log
    vx, vy, vname = verify_set(job.calib, opts.verify_data, job.img_size)
    gate = opts.gate
    if gate.uses_floor:  # measured once, on the images the guard judges, before the plan needs it
        gate = gate.with_floor(noise_floor(job.model, vx))
    budget = opts.plan_budget(gate)
    if adapter.uses_plan:
        plan, cache_info = plan_for(job.model, job.calib, method, budget,
                                    symmetric_act=adapter.symmetric_act, log=log, gate=gate)
        plan = adapter.restrict(plan)
    else:
        plan, cache_info = QuantPlan.whole(method, "backend"), {}
    # the gate and how it is applied are known before any build: builds that embed their
    # metadata up front (ExecuTorch) carry them too, so msvit-bench can read every artifact's gate
    base_info = {"int8_method": int8_method(adapter, method), **adapter.describe(method), "calib_method": method,
                 **job.calib.describe(), **gate_info(gate),
                 **({"sensitivity_dprob": round(budget, 6)} if adapter.uses_plan else {})}
    adapter.base_info = base_info  # builds that embed metadata themselves (ExecuTorch) read it
    attempts_root = job.work_dir / "int8-attempts"

    def build(p: QuantPlan, attempt: int):
        from ..runtime import load

        d = attempts_root / str(attempt)
        d.mkdir(parents=True, exist_ok=True)
        built = adapter.build(p, method, d)
        return load(built.path), built

    try:
        res = quantize_with_guard(job.model, plan, build, vx, vy, vname, gate, log=log,
                                  max_attempts=opts.max_attempts if adapter.uses_plan else 1, stress=opts.stress)
        info = {**base_info, **cache_info, **res.info(), **coverage_info(adapter, res.artifact)}
        embedded = {**job.metadata, **flat_metadata({k: v for k, v in info.items() if k not in RUN_ONLY_KEYS})}
        res.runner.close()
        files = adapter.write(res.artifact, out, embedded, info)
    finally:
        shutil.rmtree(attempts_root, ignore_errors=True)
    g = info.get("guard", {})
    failure = "" if res.report.passed else (
        f"INT8 accuracy guard failed even with {len(info.get('float_groups', []))} groups in float: "
        + "; ".join(g.get("reasons", [])) + " (artifact kept, marked failing)")
    note = f"{len(info.get('quantized_groups', []))} groups int8, {len(info.get('float_groups', []))} float"
    if res.report.weakly_verified:
        weak = (f"INT8 {adapter.target} weakly verified: the accuracy guard saw only {res.report.n} images "
                f"(< {gate.min_verify_images}); its |ΔP| bound {res.report.bound_dprob:.3f} is wide and may "
                f"still miss rare inputs: pass --verify-data with more face crops (or a larger --calib-data)")
        warnings.warn(weak, UserWarning, stacklevel=2)
        if log:
            log(f"  ⚠ {weak}")
        note += f", weakly verified ({res.report.n} images < {gate.min_verify_images})"
    return Int8Result(files, info, res.report.passed, failure, note)
