"""Pictures of predictions: face crops and annotated frames as PNG (``msvit-predict --save-crops``,
``--annotate``; ``msvit-explain`` writes its overlays with :func:`write_png` too)."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..fileio import atomic_write
from .results import Prediction


def safe_stem(i: int, source: str) -> str:
    """``0007_clip``: the input's position and a file-name-safe stem (no two inputs share a name)."""
    stem = Path(source).stem if source and not source.startswith("<") else "input"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "input"
    return f"{i:04d}_{stem}"


def write_png(path: Path, rgb) -> None:
    """An RGB uint8 array as a PNG, written whole (temp file + rename)."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"cannot encode {path.name}")
    atomic_write(path, lambda f: f.write(buf.tobytes()))


def save_visuals(i: int, pred: Prediction, crops_dir: Path | None, annotate_dir: Path | None) -> None:
    """Each frame's face crop (``crops_dir``) and the frame with its box, crop and P(fake) (``annotate_dir``)."""
    import cv2

    stem = safe_stem(i, pred.source)
    for fr in pred.frames:
        suffix = f"_f{fr.index:06d}" if pred.kind != "image" else ""
        if crops_dir is not None and fr.crop is not None:
            write_png(crops_dir / f"{stem}{suffix}.png", fr.crop)
        if annotate_dir is not None and fr.frame is not None:
            img = fr.frame.copy()
            thick = max(2, round(max(img.shape[:2]) / 400))
            if fr.box is not None:
                fake = fr.p_fake is not None and fr.p_fake >= pred.threshold
                color = (230, 40, 40) if fake else (40, 200, 40)
                x1, y1, x2, y2 = (int(round(v)) for v in fr.box)
                cv2.rectangle(img, (x1, y1), (x2, y2), color, thick)
                if fr.crop_box is not None:
                    cx1, cy1, cx2, cy2 = fr.crop_box
                    cv2.rectangle(img, (cx1, cy1), (cx2, cy2), (240, 200, 0), max(1, thick // 2))
                label = f"P(fake) {fr.p_fake:.3f}" if fr.p_fake is not None else fr.status
                if fr.score is not None:
                    label += f" face {fr.score:.2f}"
                scale = max(0.5, max(img.shape[:2]) / 1600)
                (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1 + thick // 2)
                ax, ay = (fr.crop_box[0], fr.crop_box[1]) if fr.crop_box is not None else (x1, y1)
                ay = max(ay, th + base + 4)
                cv2.rectangle(img, (ax, ay - th - base - 4), (ax + tw + 4, ay), (0, 0, 0), -1)
                cv2.putText(img, label, (ax + 2, ay - base - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1 + thick // 2)
            else:
                cv2.putText(img, fr.status, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (230, 40, 40), 2)
            write_png(annotate_dir / f"{stem}{suffix}.png", img)
