"""Writing a kit: msvit-predict's own pipeline (:class:`msvit.predict.Detector`) over images and
videos, every stage's output recorded; the folder is built aside and renamed into place whole."""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..version import __version__
from ..errors import DataError, UsageError
from ..fileio import atomic_write, check_output_dir, deferred_signals, make_temp_dir
from ..model.variants import IMAGENET_MEAN, IMAGENET_STD
from ..predict import DEFAULT_FACE_DETECTOR, Detector, discover
from ..predict.aggregate import AGG_MODES
from ..preprocess import letterbox
from .schema import (KIT_JSON, Case, ChosenFace, Crop, Detection, Frame, Kit, Source, Tensor, Tolerance, file_sha256,
                     png_bytes, rgb_sha256, tensor_of, tensor_sha256)

#: a video is copied into the kit when it is at most this big (its sampled frames always are)
MAX_SOURCE_BYTES = 32 << 20
DEFAULT_P_TOLERANCE = 0.05  # msvit's default accuracy-guard bound (Gate.max_dprob)

RULES = {
    "face_detector_rule": (
        "letterbox the frame to 192x192 (longest side; cv2 INTER_AREA when shrinking else INTER_LINEAR; "
        "round(); centred; black padding = -1.0), pixels x/127.5-1, 2304 SSD anchors, sigmoid scores >= "
        "min(conf_thres, 0.5), weighted NMS at IoU 0.3; when nothing is found and the short side >= 640 px: "
        "again in square tiles of 0.6 x the short side with 25% overlap, merged by weighted NMS"),
    "select_rule": "largest box area among detections with score >= conf_thres (first of equal areas); "
                   "area / frame area < min_face_ratio -> face_too_small",
    "margin_rule": "pad_w = int((x2-x1)*margin), pad_h = int((y2-y1)*margin); crop = (max(int(x1-pad_w),0), "
                   "max(int(y1-pad_h),0), min(int(x2+pad_w),W), min(int(y2+pad_h),H)); int() truncates toward 0; "
                   "rows y1..y2-1, columns x1..x2-1",
    "letterbox_rule": "scale = S/max(h,w); (nh, nw) = (max(1,round(h*scale)), max(1,round(w*scale))) (round half "
                      "to even); OpenCV INTER_LINEAR resize (half-pixel centres) unless already that size; paste at "
                      "top=(S-nh)//2, left=(S-nw)//2 on black (0,0,0)",
    "sampling_rule": "unique ascending values of int32(linspace(0, n_frames-1, num_frames)) (truncation)",
    "agg_rule": "conf: n frames with P: if count(P>0.8) > n//2.5 (float floor) -> mean of those; elif "
                "count(P<0.2) > 0.9n -> mean of those; else mean. mean: mean. vote: fraction with P>0.5",
}


def tolerances(p_fake: float, margin: float) -> dict[str, Tolerance]:
    """The per-stage tolerances a kit carries, each with the reason for its size."""
    return {
        "decode_mean_abs": Tolerance(2.0, "grey levels (mean |Δ| over the frame)",
                                     "JPEG IDCTs and H.264 YUV->RGB conversions (libjpeg-turbo, browsers, Android) "
                                     "differ by 1-2 levels on average; more is another colour matrix, range or "
                                     "chroma upsampling"),
        "box_px": Tolerance(0.5, "detector input pixels (x max(W,H)/192 in frame pixels)",
                            "BlazeFace regresses boxes on a 192-px letterbox: another resize kernel or float path "
                            "moves a box by well under one of its pixels; a shifted or rescaled box moves it more"),
        "score": Tolerance(0.02, "absolute",
                           "the same logits through a sigmoid; kernel and float-order differences move a "
                           "confident face's score by < 0.01"),
        "crop_box_px": Tolerance(round(0.5 * (1 + 2 * margin), 3), "detector input pixels, plus 1 frame pixel",
                                 f"box_px grown by the margin (x(1+2*{margin:g})) plus 1 for int() truncation"),
        "crop_max_abs": Tolerance(1, "grey levels (max |Δ| over the 224x224x3 crop)",
                                  "an exact float bilinear (half-pixel centres) differs from OpenCV's 11-bit "
                                  "fixed-point INTER_LINEAR by at most 1 level (mean 0.08-0.11 on the sample "
                                  "images); antialiased or area resizes differ by 6-80"),
        "crop_mean_abs": Tolerance(0.25, "grey levels (mean |Δ|)",
                                   "rounding-only differences average ~0.1 level (see crop_max_abs)"),
        "tensor_stat": Tolerance(1e-3, "absolute, per-channel mean and std of the float input",
                                 "x*scale+bias instead of (x/255-mean)/std changes values by ~1e-7; wrong mean/std, "
                                 "BGR, [0,1] or [-1,1] scaling change channel means by > 0.05"),
        "p_fake": Tolerance(p_fake, "absolute P(fake)",
                            "the accuracy guard's bound: msvit accepts a runtime/precision of these weights only "
                            "when it keeps |ΔP| within this on unseen images"),
    }


def _case_id(i: int, path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:60] or "input"
    return f"{i:03d}-{stem}"


def _artifact_info(det: Detector, artifact: Any) -> dict[str, Any]:
    s = det.session
    spec = getattr(s, "input_spec", None)
    info: dict[str, Any] = {"file": None, "sha256": None, "format": getattr(s, "format", "unknown"),
                            "precision": getattr(s, "precision", "fp32"), "runtime": det.model_name}
    p = getattr(s, "path", None)
    if p is not None and Path(p).is_file():
        info.update(file=Path(p).name, sha256=file_sha256(p))
    if spec is not None:
        info["input"] = {"name": spec.name, "dtype": "float32" if spec.dtype in ("float", "float32") else spec.dtype, "layout": spec.layout, "kind": spec.kind,
                         "shape": list(spec.shape)}
    return info


def _p_tolerance(det: Detector) -> float:
    meta = getattr(det.session, "metadata", {}) or {}
    try:
        return float(meta.get("guard_max_dprob", DEFAULT_P_TOLERANCE))
    except (TypeError, ValueError):
        return DEFAULT_P_TOLERANCE


@dataclass
class _Recorder:
    """Wraps the face detector's ``detect`` to keep every face it returns, frame by frame."""

    detect: Callable[[np.ndarray], list]
    calls: list

    def __call__(self, rgb: np.ndarray) -> list:
        faces = self.detect(rgb)
        self.calls.append(faces)
        return faces


def settings_of(det: Detector, num_frames: int, agg: str) -> dict[str, Any]:
    fd = det.face_detector
    model_path = getattr(getattr(fd, "model", None), "path", None)
    from ..predict.blazeface import BLAZEFACE, blazeface_model_path

    sha = None
    if getattr(fd, "spec", None) in BLAZEFACE.values():
        sha = file_sha256(blazeface_model_path(fd.kind))
    return {"face_detector": fd.name, "face_detector_sha256": sha or (file_sha256(model_path) if model_path else None),
            "det_size": fd.det_size, "conf_thres": det.conf_thres, "min_face_ratio": det.min_face_ratio,
            "margin": det.margin, "input_size": det.size,
            "normalize": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 255.0, "channels": "RGB"},
            "num_frames": num_frames, "agg": agg, "threshold": det.threshold, "tta_hflip": False, **RULES}


def _frame_record(fr, faces, rel: str, det: Detector, files: dict[str, bytes]) -> Frame:
    """One FrameResult (pixels kept) -> its kit record; PNGs go into ``files``."""
    f = Frame(index=int(fr.index), rgb_sha256=rgb_sha256(fr.frame), file=f"{rel}/frame-{fr.index:06d}.png",
              detections=[Detection([round(float(v), 4) for v in x.box], round(float(x.score), 6))
                          for x in sorted(faces, key=lambda x: -x.score)],
              status=fr.status)
    files[f.file] = png_bytes(fr.frame)
    if fr.p_fake is None:
        return f
    f.face = ChosenFace([round(float(v), 4) for v in fr.box], round(float(fr.score), 6), round(float(fr.face_ratio), 6))
    f.crop_box = [int(v) for v in fr.crop_box]
    lb = letterbox(fr.crop, det.size)
    f.crop = Crop(rgb_sha256(lb), f"{rel}/crop-{fr.index:06d}.png")
    files[f.crop.file] = png_bytes(lb)
    t = tensor_of(lb, IMAGENET_MEAN, IMAGENET_STD)
    f.tensor = Tensor(tensor_sha256(t), [round(float(v), 6) for v in t[0].mean((1, 2))],
                      [round(float(v), 6) for v in t[0].std((1, 2))])
    f.logit, f.p_fake = round(float(fr.logit), 6), round(float(fr.p_fake), 6)
    return f


def build_cases(det: Detector, data: list[str], num_frames: int = 20, agg: str = "conf",
                max_source_bytes: int = MAX_SOURCE_BYTES,
                log: Callable[[str], None] | None = None) -> tuple[list[Case], dict[str, bytes | Path]]:
    """Run the pipeline on every image/video under ``data``: the cases and the files to write
    (relative name -> PNG bytes, or the Path of a source to copy). DataError for an input that
    gives no case (unreadable, truncated) or when ``data`` holds no image or video."""
    from ..predict.sources import LIST_SUFFIXES, read_list

    specs = []  # a list file may name folders too (discover reads files from lists)
    for d in map(str, data):
        specs += read_list(Path(d)) if d.lower().endswith(LIST_SUFFIXES) and Path(d).is_file() else [d]
    found = discover(specs)
    sources = [s for s in found.sources if s.kind in ("image", "video")]
    bad = [s for s in found.sources if s.kind not in ("image", "video")]
    if bad:
        raise DataError(f"kit data: {bad[0].path}: {bad[0].kind} ({bad[0].message or 'not an image or video'})")
    if not sources:
        raise DataError(f"kit data {', '.join(map(str, data))}: no image or video found")
    fd = det.face_detector
    rec = _Recorder(fd.detect, [])
    fd.detect = rec  # an instance attribute: this detector only
    cases, files = [], {}
    try:
        for i, src in enumerate(sources):
            cid = _case_id(i, src.path)
            rel = f"cases/{cid}"
            rec.calls.clear()
            pred = det.predict(src.path, num_frames=num_frames, agg=agg, keep=True)
            if pred.status not in ("ok", "no_face", "face_too_small"):
                raise DataError(f"kit data: {src.path}: {pred.status}: {pred.message}")
            if len(rec.calls) != len(pred.frames):
                raise DataError(f"kit data: {src.path}: {len(rec.calls)} detector calls for {len(pred.frames)} frames")
            size = os.path.getsize(src.path)
            copy = src.kind == "image" or size <= max_source_bytes
            name = Path(src.path).name
            source = Source(name, file_sha256(src.path), size, f"{rel}/source{Path(name).suffix.lower()}" if copy else None)
            if copy:
                files[source.file] = Path(src.path)
            frames = [_frame_record(fr, faces, rel, det, files) for fr, faces in zip(pred.frames, rec.calls)]
            h, w = pred.frames[0].frame.shape[:2] if pred.frames else (pred.height, pred.width)
            cases.append(Case(cid, src.kind, source, frames, pred.status,
                              None if pred.p_fake is None else round(float(pred.p_fake), 6), pred.verdict,
                              n_frames=pred.n_frames if src.kind == "video" else 1, width=int(w), height=int(h)))
            if log:
                p = "-" if pred.p_fake is None else f"{pred.p_fake:.3f}"
                log(f"  {cid}: {src.kind}, {len(frames)} frame(s), {pred.status}, P(fake) {p}")
    finally:
        del fd.detect
    return cases, files


def write_kit(artifact: Any, data: str | os.PathLike | list, out_dir: str | os.PathLike, *,
              face_detector: str = DEFAULT_FACE_DETECTOR, conf_thres: float = 0.5, min_face_ratio: float = 0.01,
              margin: float = 0.2, num_frames: int = 20, agg: str = "conf", threshold: float | None = None,
              threads: int | None = None, overwrite: bool = False, max_source_bytes: int = MAX_SOURCE_BYTES,
              log: Callable[[str], None] | None = None) -> Kit:
    """Write a conformance kit for ``artifact`` (a path, weights file or open Session) from the
    images and videos in ``data`` (a folder, file, list file, or a list of them) into ``out_dir``.

    The folder appears whole or not at all: built in a ``.msvit-tmp-*`` folder beside it and
    renamed into place (an existing kit is refused unless ``overwrite``; then replaced only once
    the new one is complete). Returns the kit as written (its ``root`` is ``out_dir``)."""
    if agg not in AGG_MODES:
        raise DataError(f"agg must be one of {', '.join(AGG_MODES)}, got {agg!r}")
    if num_frames < 1:
        raise DataError(f"num_frames must be >= 1, got {num_frames}")
    out = Path(out_dir)
    check_output_dir(out, "kit folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out}: already exists and is not empty (pass overwrite=True / --overwrite to replace it)")
    data = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    with Detector(artifact, face_detector, conf_thres=conf_thres, min_face_ratio=min_face_ratio, margin=margin,
                  threshold=threshold, threads=threads) as det:
        if det.face_detector is None:
            raise DataError("a kit needs a face detector (the pipeline it tests starts at detection)")
        cases, files = build_cases(det, data, num_frames, agg, max_source_bytes, log)
        kit = Kit("kit", _artifact_info(det, artifact), settings_of(det, num_frames, agg), cases,
                  tolerances(_p_tolerance(det), margin), created_by=f"msvit {__version__}")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = make_temp_dir(out.parent)
    try:
        stage = work / "kit"
        for rel, content in files.items():
            p = stage / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, p)
            else:
                p.write_bytes(content)
        atomic_write(stage / KIT_JSON, lambda f: f.write(kit.to_json().encode("utf-8")))
        _publish_dir(stage, out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kit.root = out
    return kit


def _publish_dir(stage: Path, out: Path, work: Path) -> None:
    """Rename the staged folder to ``out``; an old ``out`` moves into ``work`` first and is
    put back if the rename fails. Ctrl-C waits for the two renames."""
    with deferred_signals():
        old = None
        if out.exists():
            old = work / "replaced"
            os.replace(out, old)
        try:
            os.replace(stage, out)
        except OSError:
            if old is not None:
                os.replace(old, out)
            raise
