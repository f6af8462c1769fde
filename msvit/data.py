"""Image folders and manifests: what calibration, verification and benchmarks read.

Labels come from ``real/`` and ``fake/`` folder names (fake = 1, DeepGuard's
convention) or a CSV manifest with ``path`` and ``label`` columns.
"""
from __future__ import annotations

import csv
import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DataError
from .preprocess import load_image, normalize, preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
LABELS = {"real": 0, "fake": 1}


@dataclass
class ImageSet:
    """Decoded, preprocessed images with optional labels and what was skipped."""

    files: list[Path]
    x: np.ndarray  # float32 (N, 3, S, S), normalised
    labels: np.ndarray | None  # int (N,) or None
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.x)

    @property
    def sha256(self) -> str:
        if not self.files:  # arrays given in memory: hash what is there
            return hashlib.sha256(np.ascontiguousarray(self.x).tobytes()).hexdigest()
        return dataset_hash(self.files)

    @property
    def description(self) -> str:
        """What reports and manifests say about the data, e.g. ``83 images from faces/eval``."""
        return f"{len(self)} {self.source}" if not self.files else f"{len(self)} images from {self.source}"

    def subset(self, idx: Sequence[int]) -> "ImageSet":
        idx = list(idx)
        return ImageSet([self.files[i] for i in idx] if self.files else [], self.x[idx],
                        None if self.labels is None else self.labels[idx], [], self.source)


def _label_from_path(p: Path) -> int | None:
    for part in reversed(p.parts[:-1]):
        if part.lower() in LABELS:
            return LABELS[part.lower()]
    return None


def discover(source: str | os.PathLike) -> tuple[list[Path], list[int | None]]:
    """List image files (recursive, sorted) of a folder or a CSV manifest, with labels if known."""
    src = Path(source)
    if not src.exists():
        raise DataError(f"no such file or folder: {src}")
    if src.is_file():
        if src.suffix.lower() != ".csv":
            raise DataError(f"{src}: expected a folder of images or a .csv manifest")
        return _read_manifest(src)
    try:
        files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    except OSError as e:
        raise DataError(f"{src}: cannot list the folder: {e.strerror or e}") from None
    return files, [_label_from_path(p.relative_to(src)) for p in files]


def _read_manifest(src: Path) -> tuple[list[Path], list[int | None]]:
    files, labels = [], []
    try:
        with open(src, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise DataError(f"{src}: manifest needs a 'path' column (and optionally 'label': real|fake|0|1)")
            for row in reader:
                raw = (row.get("path") or "").strip()
                if not raw or not raw.isprintable():
                    raise DataError(f"{src}, line {reader.line_num}: "
                                    + ("empty 'path'" if not raw else f"unprintable 'path' {raw[:40]!r}"))
                p = Path(raw)
                files.append(p if p.is_absolute() else src.parent / p)
                lab = (row.get("label") or "").strip().lower()
                labels.append(LABELS.get(lab, int(lab) if lab in ("0", "1") else None))
    except UnicodeDecodeError:
        raise DataError(f"{src}: not a UTF-8 text CSV manifest") from None
    except csv.Error as e:
        raise DataError(f"{src}: not a readable CSV manifest: {e}") from None
    except OSError as e:
        raise DataError(f"{src}: cannot read the manifest: {e.strerror or e}") from None
    return files, labels


def dataset_hash(files: Sequence[Path]) -> str:
    """sha256 over sorted (file name, bytes): any renamed, added or edited image changes it."""
    h = hashlib.sha256()
    for p in sorted(files, key=lambda q: q.name):
        h.update(p.name.encode())
        h.update(b"\0")
        try:
            h.update(hashlib.sha256(p.read_bytes()).digest())
        except OSError as e:
            raise DataError(f"{p}: cannot read it to hash the data set: {e.strerror or e}") from None
    return h.hexdigest()


#: how many skipped files the console names (the manifest lists them all)
SHOW_SKIPPED = 5


def short(items: Sequence[str], n: int = SHOW_SKIPPED) -> str:
    return ", ".join(items[:n]) + (f", … ({len(items) - n} more)" if len(items) > n else "")


def skipped_summary(skipped: Sequence[tuple[Path | str, str]], source: str | os.PathLike, used: str = "",
                    n: int = SHOW_SKIPPED) -> str:
    """One console paragraph naming the first ``n`` skipped files and why, e.g.
    ``skipped 2 files of faces/calib: a.png (cannot read image: ...), notes.txt (not an image)``."""
    if not skipped:
        return ""
    head = [f"{Path(p).name} ({why})" for p, why in skipped[:n]]
    more = f"; {len(skipped) - n} more" if len(skipped) > n else ""
    return (f"skipped {len(skipped)} file(s) of {source}{' ' + used if used else ''}: "
            + "; ".join(head) + more)


def skipped_records(skipped: Sequence[tuple[Path | str, str]]) -> list[dict[str, str]]:
    """Every skipped file and why, for manifests and JSON reports."""
    return [{"file": str(p), "reason": why} for p, why in skipped]


def load_images(source: str | os.PathLike, size: int = 224, limit: int | None = None, seed: int = 0,
                progress: bool = False) -> ImageSet:
    """Read a folder/manifest: unreadable or non-image files are skipped and reported.

    With ``limit``, a seeded random subset (deterministic for the same files and seed).
    """
    files, labels = discover(source)
    if not files:
        raise DataError(f"{source}: no files found")
    listed = Path(source).is_file()  # a CSV manifest: a missing file is the manifest's mistake
    order = list(range(len(files)))
    if limit is not None and limit < len(files):
        random.Random(seed).shuffle(order)
    ok_files, ok_labels, arrays, skipped = [], [], [], []
    from tqdm.auto import tqdm

    for i in tqdm(order, desc="reading images", disable=not progress, leave=False):
        p = files[i]
        if listed and not p.is_file():
            skipped.append((p, f"listed in {Path(source).name} but {'a folder' if p.is_dir() else 'does not exist'}"))
            continue
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((p, "not an image suffix"))
            continue
        try:
            arrays.append(preprocess(load_image(p), size))
        except DataError as e:
            skipped.append((p, str(e)))
            continue
        except Exception as e:  # a decoder's own failure on one odd file must not end the whole read
            skipped.append((p, f"cannot read image {p}: {type(e).__name__}: {e}"))
            continue
        ok_files.append(p)
        ok_labels.append(labels[i])
        if limit is not None and len(ok_files) >= limit:
            break
    if not ok_files:
        raise DataError(_nothing_usable(source, files, skipped))
    lab = np.asarray(ok_labels, dtype=np.int64) if all(v is not None for v in ok_labels) else None
    return ImageSet(ok_files, np.stack(arrays), lab, skipped, str(source))


def _nothing_usable(source, files: list[Path], skipped: list[tuple[Path, str]]) -> str:
    """Why no file of ``source`` could be used, naming the files (missing ones first)."""
    missing = [p for p, why in skipped if why.startswith("listed in ")]
    if missing:
        names = [str(p.relative_to(Path(source).parent)) if p.is_relative_to(Path(source).parent) else str(p)
                 for p in missing]
        msg = f"{len(missing)} file(s) listed in {source} do not exist: {short(names)}"
        if len(missing) < len(files):
            msg += f"; the other {len(files) - len(missing)} are not readable images"
        return msg
    reasons = [f"{p.name}: {why}" for p, why in skipped]
    return (f"{source}: none of {len(files)} files is a readable image "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}): {short(reasons, 3)}")


def builtin_inputs(n: int = 8, size: int = 224, seed: int = 0) -> np.ndarray:
    """Deterministic synthetic RGB images (smooth colour fields + texture), preprocessed.

    Used to verify artifacts when the user gives no ``--verify-data``: real faces are
    better, but these exercise the whole graph with image-like statistics.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 2 * np.pi, 3)
        base = np.stack([np.sin(a + 3 * xx + 2 * yy), np.cos(b + 2 * xx - 3 * yy), np.sin(c + 4 * xx * yy)], -1)
        img = (127.5 + 90 * base + rng.normal(0, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
        out.append(img)
    return normalize(np.stack(out))


def resolve_data(spec: "str | os.PathLike | ImageSet | np.ndarray | None", size: int = 224, *,
                 builtin: int = 8, progress: bool = False) -> ImageSet:
    """The one loader from a data spec to an :class:`ImageSet`: a folder or CSV manifest, an
    ImageSet, preprocessed float32 (N, 3, S, S) arrays, or None for the built-in synthetic
    images. Export verification, the INT8 guard and the benchmark all read data through it."""
    if spec is None:
        return ImageSet([], builtin_inputs(builtin, size), None, [], "built-in synthetic images")
    if isinstance(spec, ImageSet):
        return spec
    if isinstance(spec, np.ndarray):
        x = np.ascontiguousarray(spec, np.float32)
        if x.ndim != 4 or x.shape[1:] != (3, size, size):
            raise DataError(f"expected preprocessed float32 inputs (N, 3, {size}, {size}), got shape {x.shape}")
        return ImageSet([], x, None, [], "given inputs")
    return load_images(spec, size, progress=progress)
