"""Running a kit: what an app does with a kit, done by msvit itself on another artifact or
runtime (the reference implementation of docs/kit.md's "What an app puts in a run").

Each stage is fed the kit's own input to that stage (the kit's frame PNG, crop box and crop
PNG), so a difference in one stage cannot make a later one fail. :class:`Stages` holds the
stage functions; replacing one (a wrong resize, a wrong normalisation) is how the tests make
the deliberately wrong runs that :func:`msvit.kit.check` must name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..version import __version__
from ..metrics import sigmoid
from ..predict import Detector, aggregate, crop_box, select_face
from ..preprocess import letterbox
from .schema import (Case, ChosenFace, Crop, Detection, Frame, Kit, KitError, Tensor, load, read_png, rgb_sha256,
                     tensor_of, tensor_sha256)


def _crop(rgb: np.ndarray, box: list[int], size: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    return letterbox(rgb[y1:y2, x1:x2], size)


@dataclass
class Stages:
    """The pipeline's stage functions (msvit's own by default)."""

    #: (frame uint8 RGB, kit crop box, size) -> letterboxed uint8 crop
    letterbox: Callable[[np.ndarray, list[int], int], np.ndarray] = _crop
    #: (letterboxed uint8 crop, mean, std) -> float32 (1, 3, S, S)
    normalize: Callable[..., np.ndarray] = tensor_of
    #: boxes of a detection -> boxes (e.g. a shift), applied before selection
    boxes: Callable[[list], list] = field(default=lambda faces: faces)


def run_kit(kit: str | os.PathLike | Kit, artifact: Any, out_json: str | os.PathLike | None = None, *,
            stages: Stages | None = None, threads: int | None = None, save_crops: bool = False,
            log: Callable[[str], None] | None = None) -> Kit:
    """Run ``kit`` with ``artifact`` (path, weights or Session) and msvit's pipeline with the
    kit's settings; return the run (``kind: "run"``), written to ``out_json`` when given
    (crops as PNG beside it when ``save_crops``)."""
    kit = load(kit)
    s = kit.settings
    st = stages or Stages()
    mean, std = tuple(s["normalize"]["mean"]), tuple(s["normalize"]["std"])
    out_dir = Path(out_json).parent if out_json else None
    runs: list[Case] = []
    with Detector(artifact, s["face_detector"], conf_thres=s["conf_thres"], min_face_ratio=s["min_face_ratio"],
                  margin=s["margin"], threshold=s["threshold"], det_size=s.get("det_size"), threads=threads) as det:
        size = det.size
        fd = det.face_detector
        for case in kit.cases:
            frames: list[Frame] = []
            e2e: list[float] = []
            for kf in case.frames:
                if not kf.file:
                    raise KitError(f"{case.id} frame {kf.index}: the kit has no frame file")
                rgb = read_png(kit.path(kf.file))
                h, w = rgb.shape[:2]
                faces = st.boxes(fd.detect(rgb))
                sel = select_face(faces, (h, w), s["conf_thres"], s["min_face_ratio"], fd.probabilistic)
                f = Frame(kf.index, rgb_sha256(rgb), None,
                          [Detection([float(v) for v in x.box], float(x.score)) for x in sorted(faces, key=lambda x: -x.score)],
                          sel.status)
                if sel.face is not None:
                    f.face = ChosenFace([float(v) for v in sel.face.box], float(sel.face.score), float(sel.ratio))
                    f.crop_box = [int(v) for v in crop_box(sel.face.box, (h, w), s["margin"])]
                    own = st.normalize(st.letterbox(rgb, f.crop_box, size), mean, std)
                    e2e.append(float(sigmoid(det.classify(own))[0]))
                if kf.crop_box is not None and kf.crop is not None:  # isolated stages: the kit's inputs
                    lb = st.letterbox(rgb, kf.crop_box, size)
                    f.crop = Crop(rgb_sha256(lb))
                    if save_crops and out_dir is not None:
                        from ..fileio import atomic_write
                        from .schema import png_bytes

                        rel = f"crops/{case.id}-{kf.index:06d}.png"
                        (out_dir / "crops").mkdir(parents=True, exist_ok=True)
                        data = png_bytes(lb)
                        atomic_write(out_dir / rel, lambda fh: fh.write(data))
                        f.crop.file = rel
                    t = st.normalize(read_png(kit.path(kf.crop.file)), mean, std)
                    f.tensor = Tensor(tensor_sha256(t), [float(v) for v in t[0].mean((1, 2))],
                                      [float(v) for v in t[0].std((1, 2))])
                    f.logit = float(det.classify(t)[0])
                    f.p_fake = float(sigmoid(np.asarray([f.logit]))[0])
                frames.append(f)
            ps = [f.p_fake for f in frames if f.p_fake is not None]
            p = None if not ps else (aggregate(ps, s["agg"]) if case.kind == "video" else ps[0])
            pe = None if not e2e else (aggregate(e2e, s["agg"]) if case.kind == "video" else e2e[0])
            status = "ok" if ps else next((f.status for f in frames if f.status == "face_too_small"), "no_face")
            runs.append(Case(case.id, case.kind, case.source, frames, status, p,
                             None if p is None else ("fake" if p >= s["threshold"] else "real"),
                             case.n_frames, case.width, case.height, p_fake_e2e=pe))
            if log:
                log(f"  {case.id}: {status}, P(fake) {'-' if p is None else f'{p:.4f}'}")
        artifact_info = {"file": Path(str(artifact)).name if isinstance(artifact, (str, os.PathLike)) else None,
                         "format": getattr(det.session, "format", "unknown"),
                         "precision": getattr(det.session, "precision", "fp32"), "runtime": det.model_name}
    run = Kit("run", artifact_info, dict(s), runs, created_by=f"msvit {__version__} (msvit.kit.run_kit)")
    if out_json is not None:
        from ..fileio import atomic_write_text

        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_json, run.to_json())
        run.root = Path(out_json).parent
    return run
