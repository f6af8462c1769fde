"""TorchScript-mobile ``.ptl`` in the PyTorch lite interpreter; metadata in the extra file
``metadata.json`` (read from the zip without loading the model)."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from ..errors import ArtifactError
from .base import Session, first_line, spec_from_metadata

METADATA_FILE = "metadata.json"


def metadata_extra_files(metadata: dict[str, str]) -> dict[str, str]:
    """``_extra_files`` for ``_save_for_lite_interpreter``: how the metadata is embedded."""
    return {METADATA_FILE: json.dumps(metadata, indent=1)}


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith(f"/extra/{METADATA_FILE}")), None)
            return json.loads(z.read(name)) if name else {}
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not a readable TorchScript-mobile (.ptl) archive ({first_line(e)})") from None


class LiteSession(Session):
    format = "torchscript"
    title = "TorchScript-mobile"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu") -> None:
        import torch
        from torch.jit.mobile import _load_for_lite_interpreter

        meta = read_metadata(path)
        if threads:
            torch.set_num_threads(threads)
        try:
            self.module = _load_for_lite_interpreter(str(path))
        except Exception as e:
            raise ArtifactError(f"{path}: the lite interpreter cannot load it ({first_line(e)})") from None
        super().__init__(path, meta, spec_from_metadata(meta), device, threads)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.module(torch.from_numpy(x))
        return (out[1] if isinstance(out, (tuple, list)) else out).numpy()  # image input: (prob, logit)

    def close(self) -> None:
        self.module = None
