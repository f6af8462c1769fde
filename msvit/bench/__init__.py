"""msvit.bench: latency, memory, accuracy, compute and (on Jetson) power of every artifact,
against PyTorch eager FP32 measured in the same run.

Stages, one module each: :mod:`.discovery` (artifacts and the facts their manifests and
metadata carry) -> :mod:`.plan` (rows) -> :mod:`.load` (:func:`msvit.runtime.load`) ->
:mod:`.timing` (every row round-robin in blocks, the baseline included) -> :mod:`.evaluate`
(accuracy, agreement, parity) -> :mod:`.report`; :mod:`.run` ties them together.

>>> from msvit.bench import BenchOptions, run
>>> rep = run(BenchOptions(weights="W.bin", data="faces/eval", targets=["onnx"], iters=20))
>>> rep.rows[1].latency["p50_ms"], rep.rows[1].speedup, rep.compute["within_budget"]
"""
from .discovery import Artifact, discover_artifacts
from .options import BenchError, BenchOptions, DeviceUnavailableError
from .rows import ICONS, ROW_KEYS, SCHEMA, BenchReport, BenchRow
from .run import run
from .timing import NOISY_FOREIGN_PCT, NOISY_SPREAD_PCT, noise_verdict

__all__ = ["ICONS", "NOISY_FOREIGN_PCT", "NOISY_SPREAD_PCT", "ROW_KEYS", "SCHEMA", "Artifact", "BenchError",
           "BenchOptions", "BenchReport", "BenchRow", "DeviceUnavailableError", "discover_artifacts",
           "noise_verdict", "run"]
