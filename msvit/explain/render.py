"""Pictures of the maps: a heatmap on the face crop (letterbox padding removed), and a contact
sheet of several frames' overlays."""
from __future__ import annotations

import numpy as np

from ..preprocess import letterbox_geometry


def map_to_crop(cam: np.ndarray, crop_hw: tuple[int, int]) -> np.ndarray:
    """An (S, S) map at input resolution -> the crop's (H, W): the letterbox padding cut away, the
    rest resized (bilinear) to the crop's own size."""
    import cv2

    size = cam.shape[0]
    top, left, h, w = letterbox_geometry(crop_hw[0], crop_hw[1], size)
    inner = np.ascontiguousarray(cam[top:top + h, left:left + w], np.float32)
    return cv2.resize(inner, (crop_hw[1], crop_hw[0]), interpolation=cv2.INTER_LINEAR)


def overlay(crop: np.ndarray, cam: np.ndarray, box_threshold: float | None = None) -> np.ndarray:
    """uint8 RGB crop + (S, S) map -> uint8 RGB overlay of the crop's size (grad-cam's
    ``show_cam_on_image``, jet colormap); ``box_threshold``: a box around the map's values >= it."""
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    mask = map_to_crop(cam, crop.shape[:2])
    out = show_cam_on_image(crop.astype(np.float32) / 255.0, np.clip(mask, 0, 1), use_rgb=True)
    if box_threshold is not None:
        ys, xs = np.nonzero(mask >= box_threshold)
        if len(xs):
            thick = max(1, round(max(crop.shape[:2]) / 200))
            cv2.rectangle(out, (int(xs.min()), int(ys.min())), (int(xs.max()), int(ys.max())), (255, 255, 255), thick)
    return out


def contact_sheet(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], tile: int = 160) -> np.ndarray:
    """``[(row label, [(column label, RGB image), ...]), ...]`` -> one uint8 RGB sheet, tiles scaled to
    ``tile`` px high, labels above each tile."""
    import cv2

    label_h = 18
    built = []
    for row_label, tiles in rows:
        cells = []
        for j, (label, img) in enumerate(tiles):
            w = max(1, round(img.shape[1] * tile / img.shape[0]))
            cell = np.zeros((tile + label_h, max(w, tile), 3), np.uint8)
            cell[label_h:, :w] = cv2.resize(img, (w, tile), interpolation=cv2.INTER_AREA)
            text = f"{row_label} {label}" if j == 0 else label
            cv2.putText(cell, text[:40], (2, label_h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
            cells.append(cell)
        built.append(np.concatenate(cells, axis=1))
    width = max(r.shape[1] for r in built)
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in built], axis=0)
