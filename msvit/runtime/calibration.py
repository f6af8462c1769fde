"""The operating point an artifact is run at: its threshold on P(fake), its temperature, and where
both came from.

``msvit-calibrate`` chooses them on the user's own labelled footage and stores them either in a
new artifact's embedded metadata (``threshold``, ``temperature``, ``calibration``: the provenance
as JSON) or, for an artifact that cannot be rewritten, in a sidecar ``<artifact>.calibration.json``
beside it. :func:`msvit.runtime.load` reads the sidecar when there is one (it wins over the
metadata, as the later and deliberate choice), after checking that it was made for this very file.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactError

SIDECAR_SUFFIX = ".calibration.json"
SIDECAR_FORMAT = "msvit-calibration"
SIDECAR_VERSION = 1
#: formats whose embedded metadata msvit can rewrite (``rewrite_metadata`` in msvit.runtime.<module>)
REWRITABLE = ("onnx", "openvino", "trt")


@dataclass(frozen=True)
class OperatingPoint:
    """P(fake) = sigmoid(logit / temperature); the verdict is fake when P(fake) >= threshold."""

    threshold: float = 0.5
    temperature: float = 1.0
    source: str = "default"  # default | metadata | sidecar | calibrated metadata | option
    where: str = ""  # the file it was read from
    calibration: dict[str, Any] = field(default_factory=dict)  # msvit-calibrate's provenance

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration)

    def describe(self) -> str:
        """One line: the threshold, the temperature when not 1, and where they came from."""
        t = f"threshold {self.threshold:.4g}" + ("" if self.temperature == 1.0 else f", temperature {self.temperature:.3g}")
        c = self.calibration
        if c:
            tgt = c.get("target", {})
            n = c.get("counts", {})
            origin = "metadata" if self.source == "metadata" else f"sidecar {SIDECAR_SUFFIX}"
            return (f"{t} (calibrated for {str(tgt.get('metric', '?')).upper()} {100 * float(tgt.get('value', 0)):g}%: "
                    f"{n.get('real', '?')} real/{n.get('fake', 0)} fake, {str(c.get('date', '?'))[:10]}, {origin})")
        if self.source == "option":
            return f"{t} (from --threshold)"
        return f"{t} (the artifact's own, uncalibrated: msvit-calibrate picks one for your footage)"


def sidecar_path(artifact: str | os.PathLike) -> Path:
    return Path(str(artifact) + SIDECAR_SUFFIX)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, or of every file under a folder (sorted relative names and bytes)."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        if f != p:
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _number(v: Any, name: str, where: str, lo: float, hi: float) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ArtifactError(f"{where}: {name} {v!r} is not a number") from None
    if not lo < x < hi:
        raise ArtifactError(f"{where}: {name} {x} is outside ({lo:g}, {hi:g})")
    return x


def from_metadata(metadata: dict[str, str], where: str = "") -> OperatingPoint:
    """The operating point an artifact's own metadata states (0.5 and 1 when it states none)."""
    try:
        cal = json.loads(metadata.get("calibration") or "{}")
    except ValueError:
        cal = {}
    try:
        t = float(metadata.get("threshold", 0.5))
        temp = float(metadata.get("temperature", 1.0))
    except ValueError:
        t, temp = 0.5, 1.0
    return OperatingPoint(t, temp if temp > 0 else 1.0, "metadata" if cal else "default", where,
                          cal if isinstance(cal, dict) else {})


def sidecar_document(artifact: str | os.PathLike, threshold: float, temperature: float,
                     calibration: dict[str, Any]) -> dict[str, Any]:
    """What ``<artifact>.calibration.json`` holds (bound to the artifact by its sha256)."""
    return {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "artifact": Path(artifact).name,
            "artifact_sha256": file_sha256(artifact), "threshold": threshold, "temperature": temperature,
            "calibration": calibration}


def read_sidecar(artifact: str | os.PathLike) -> OperatingPoint | None:
    """The sidecar's operating point, None when there is no sidecar. A sidecar that is unreadable,
    malformed or made for another file is an :class:`ArtifactError` (never a silent 0.5)."""
    side = sidecar_path(artifact)
    if not side.exists():
        return None
    try:
        doc = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{side}: unreadable calibration sidecar ({e}); re-run msvit-calibrate or remove it") from None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        raise ArtifactError(f"{side}: not an msvit calibration sidecar (format {SIDECAR_FORMAT!r} expected)")
    if int(doc.get("version", 0)) > SIDECAR_VERSION:
        raise ArtifactError(f"{side}: made by a newer msvit (sidecar version {doc.get('version')}); upgrade msvit")
    want = doc.get("artifact_sha256")
    if want and want != file_sha256(artifact):
        raise ArtifactError(f"{side} was made for another file than {Path(artifact).name} (sha256 differs): the "
                            "artifact was replaced after calibration; re-run msvit-calibrate or remove the sidecar")
    cal = doc.get("calibration") if isinstance(doc.get("calibration"), dict) else {}
    return OperatingPoint(_number(doc.get("threshold"), "threshold", str(side), 0.0, 1.0),
                          _number(doc.get("temperature", 1.0), "temperature", str(side), 0.0, float("inf")),
                          "sidecar", str(side), cal)


def operating_point(artifact: str | os.PathLike, metadata: dict[str, str]) -> OperatingPoint:
    """The sidecar's operating point when there is one, else the metadata's."""
    return read_sidecar(artifact) or from_metadata(metadata, str(artifact))


def calibrated_metadata(metadata: dict[str, str], threshold: float, temperature: float,
                        calibration: dict[str, Any]) -> dict[str, str]:
    """``metadata`` with the new operating point and its provenance (flat str -> str)."""
    out = dict(metadata)
    out["threshold"] = repr(float(threshold))
    out["temperature"] = repr(float(temperature))
    out["calibration"] = json.dumps(calibration, sort_keys=True)
    if temperature != 1.0:
        out["output"] = f"logit (N,1); P(fake) = sigmoid(logit / {temperature!r}) (temperature-calibrated)"
    elif "temperature-calibrated" in out.get("output", ""):
        out["output"] = "logit (N,1); P(fake) = sigmoid(logit)"
    return out
