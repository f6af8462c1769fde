"""The kit's JSON schema as typed records, its checksums and its files (docs/kit.md).

A kit (``kind: "kit"``) and a run (``kind: "run"``) are the same document: ``kit.json`` in a
folder whose ``cases/`` hold the frames and crops as PNG. Paths in the JSON are POSIX paths
relative to the folder that holds it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

SCHEMA = 1
KIT_JSON = "kit.json"
KINDS = ("kit", "run")


class KitError(DataError):
    """A kit or run document that cannot be read: missing, not JSON, wrong schema, a field of
    the wrong type, a file it names that is absent or whose pixels do not match their checksum."""


# --------------------------------------------------------------------------- checksums
def rgb_sha256(rgb: np.ndarray) -> str:
    """sha256 of uint8 RGB pixels, HWC row-major, no header (``H*W*3`` bytes)."""
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise DataError(f"rgb_sha256 takes uint8 HxWx3 pixels, got {a.dtype} {a.shape}")
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def tensor_of(crop: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """The float model input of a letterboxed uint8 crop: float32 (1, 3, S, S), computed op by op
    in float32: ``t = f32(u8) / 255; t -= mean[c]; t /= std[c]`` (msvit.preprocess.normalize)."""
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    t = (crop.astype(np.float32) / np.float32(255.0) - m) / s
    return np.ascontiguousarray(np.moveaxis(t, -1, 0)[None], np.float32)


def tensor_sha256(t: np.ndarray) -> str:
    """sha256 of a float32 tensor's little-endian bytes in its own (NCHW) order."""
    return hashlib.sha256(np.ascontiguousarray(t, "<f4").tobytes()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- PNG files
def png_bytes(rgb: np.ndarray) -> bytes:
    """8-bit RGB PNG (colour type 2), no gamma/ICC/text chunks: decodes to exactly ``rgb``."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise DataError(f"cannot encode a {rgb.shape} frame as PNG")
    return buf.tobytes()


def read_png(path: str | os.PathLike) -> np.ndarray:
    """A kit PNG -> uint8 RGB HWC; KitError when absent or not an RGB PNG."""
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise KitError(f"{p}: no such file (named in the kit)")
    try:
        with Image.open(p) as im:
            if im.format != "PNG":
                raise KitError(f"{p}: not a PNG ({im.format})")
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise KitError(f"{p}: cannot read it as PNG ({e})") from None


# --------------------------------------------------------------------------- records
@dataclass
class Tolerance:
    value: float
    unit: str
    why: str


@dataclass
class Detection:
    box: list[float]  # x1, y1, x2, y2 in frame pixels
    score: float


@dataclass
class ChosenFace:
    box: list[float]
    score: float
    ratio: float  # box area / frame area


@dataclass
class Crop:
    rgb_sha256: str
    file: str | None = None  # the letterboxed crop as PNG (optional in a run)


@dataclass
class Tensor:
    sha256: str
    mean: list[float]  # per channel (R, G, B) of the float input
    std: list[float]


@dataclass
class Frame:
    index: int
    rgb_sha256: str | None = None
    file: str | None = None
    detections: list[Detection] | None = None
    status: str | None = None  # ok | no_face | face_too_small
    face: ChosenFace | None = None
    crop_box: list[int] | None = None
    crop: Crop | None = None
    tensor: Tensor | None = None
    logit: float | None = None
    p_fake: float | None = None


@dataclass
class Source:
    name: str
    sha256: str
    bytes: int
    file: str | None = None  # the input file copied into the kit, or None


@dataclass
class Case:
    id: str
    kind: str  # image | video
    source: Source | None
    frames: list[Frame]
    status: str
    p_fake: float | None = None
    verdict: str | None = None
    n_frames: int | None = None
    width: int | None = None
    height: int | None = None
    p_fake_e2e: float | None = None


@dataclass
class Kit:
    """A kit or a run (``kind``), as read from / written to ``kit.json``."""

    kind: str
    artifact: dict[str, Any]
    settings: dict[str, Any]
    cases: list[Case]
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    created_by: str = ""
    schema: int = SCHEMA
    root: Path | None = field(default=None, compare=False)  # the folder its relative paths start from

    def path(self, rel: str) -> Path:
        """A file named in the document, resolved against its folder (never outside it)."""
        if self.root is None:
            raise KitError(f"{rel}: this document has no folder to resolve files against")
        p = (self.root / rel).resolve()
        if self.root.resolve() not in p.parents:
            raise KitError(f"{rel}: a kit file must lie inside the kit folder {self.root}")
        return p

    def case(self, case_id: str) -> Case | None:
        return next((c for c in self.cases if c.id == case_id), None)

    def to_dict(self) -> dict[str, Any]:
        d = {"schema": self.schema, "kind": self.kind, "created_by": self.created_by, "artifact": self.artifact,
             "settings": self.settings, "tolerances": {k: asdict(v) for k, v in self.tolerances.items()},
             "cases": [asdict(c) for c in self.cases]}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- reading
def _typed(cls, d: Any, where: str):
    if not isinstance(d, dict):
        raise KitError(f"{where}: expected an object, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in d.items() if k in names})
    except TypeError as e:
        raise KitError(f"{where}: {e}") from None


def _frame(d: dict, where: str) -> Frame:
    f = _typed(Frame, d, where)
    if not isinstance(f.index, int):
        raise KitError(f"{where}.index: expected an integer, got {f.index!r}")
    if f.detections is not None:
        f.detections = [_typed(Detection, x, f"{where}.detections[{i}]") for i, x in enumerate(f.detections)]
        for i, x in enumerate(f.detections):
            if not (isinstance(x.box, list) and len(x.box) == 4):
                raise KitError(f"{where}.detections[{i}].box: expected [x1, y1, x2, y2], got {x.box!r}")
    if f.face is not None:
        f.face = _typed(ChosenFace, f.face, f"{where}.face")
    if f.crop is not None:
        f.crop = _typed(Crop, f.crop, f"{where}.crop")
    if f.tensor is not None:
        f.tensor = _typed(Tensor, f.tensor, f"{where}.tensor")
    if f.crop_box is not None and not (isinstance(f.crop_box, list) and len(f.crop_box) == 4):
        raise KitError(f"{where}.crop_box: expected [x1, y1, x2, y2], got {f.crop_box!r}")
    return f


def from_dict(d: Any, root: Path | None = None, where: str = "kit") -> Kit:
    if not isinstance(d, dict):
        raise KitError(f"{where}: expected a JSON object at the top, got {type(d).__name__}")
    if d.get("schema") != SCHEMA:
        raise KitError(f"{where}: schema {d.get('schema')!r}, this msvit reads schema {SCHEMA}")
    if d.get("kind") not in KINDS:
        raise KitError(f"{where}: kind must be one of {KINDS}, got {d.get('kind')!r}")
    if not isinstance(d.get("cases"), list):
        raise KitError(f"{where}: 'cases' must be a list")
    cases = []
    for i, c in enumerate(d["cases"]):
        w = f"{where}.cases[{i}]"
        case = _typed(Case, c, w)
        if case.source is not None:
            case.source = _typed(Source, case.source, f"{w}.source")
        if not isinstance(case.frames, list):
            raise KitError(f"{w}.frames: expected a list")
        case.frames = [_frame(f, f"{w}.frames[{j}]") for j, f in enumerate(case.frames)]
        cases.append(case)
    tol = {k: _typed(Tolerance, v, f"{where}.tolerances.{k}") for k, v in (d.get("tolerances") or {}).items()}
    return Kit(kind=d["kind"], artifact=d.get("artifact") or {}, settings=d.get("settings") or {}, cases=cases,
               tolerances=tol, created_by=d.get("created_by", ""), root=root)


def load(path: str | os.PathLike | Kit) -> Kit:
    """A kit folder, or the path of its (or a run's) JSON -> :class:`Kit`. KitError when it
    cannot be read."""
    if isinstance(path, Kit):
        return path
    p = Path(path)
    if p.is_dir():
        p = p / KIT_JSON
    if not p.is_file():
        raise KitError(f"{path}: no such kit (expected a folder with {KIT_JSON}, or a JSON file)")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise KitError(f"{p}: not a readable JSON document ({e})") from None
    return from_dict(d, p.parent, str(p))


def verify_files(kit: Kit) -> int:
    """Every frame/crop PNG the document names exists and decodes to its ``rgb_sha256``;
    the copied sources match their sha256. Returns the number of files checked."""
    n = 0
    for c in kit.cases:
        if c.source is not None and c.source.file:
            p = kit.path(c.source.file)
            if not p.is_file() or file_sha256(p) != c.source.sha256:
                raise KitError(f"{c.id}: source {c.source.file} is missing or differs from its sha256")
            n += 1
        for f in c.frames:
            for rel, sha in ((f.file, f.rgb_sha256), (f.crop.file if f.crop else None, f.crop.rgb_sha256 if f.crop else None)):
                if rel:
                    if sha and rgb_sha256(read_png(kit.path(rel))) != sha:
                        raise KitError(f"{c.id} frame {f.index}: {rel} does not decode to its rgb_sha256")
                    n += 1
    return n
