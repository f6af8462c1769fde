"""Load: open each row's sessions through :func:`msvit.runtime.load`, with peak memory measured
over load and warm-up."""
from __future__ import annotations

import numpy as np

from ..errors import MsvitError
from ..export.targets import get_target
from .discovery import Artifact
from .plan import Candidate
from .timing import PeakMemory


def load_row(c: Candidate, net, device: str, threads: int, x1: np.ndarray, warmup: int) -> None:
    """Open the row's sessions (memory measured over load + warm-up) or mark the row."""
    from .. import runtime

    def open_(a: Artifact):
        if c.row.target == "onnx" and device in ("cuda", "jetson"):
            try:
                return runtime.load(a.path, threads, device="cuda", spinning=False)
            except MsvitError:
                c.row.note = "onnxruntime has no CUDA provider here: ran on CPU"
        # no idle spinning: a spinning onnxruntime pool steals the core of the row being timed
        opts = {"spinning": False} if a.path.suffix in (".onnx", ".ort") else {}
        return runtime.load(a.path, threads, device=get_target(c.row.target).device, **opts)

    try:
        with PeakMemory() as mem:
            if c.row.target == "torch":
                c.s1 = c.sn = runtime.from_model(net, threads, device)
            else:
                c.row.artifact = str(c.a1.path) if c.a1 else None
                c.row.artifact_batch = str(c.an.path) if c.an else None
                c.s1 = open_(c.a1) if c.a1 else None
                c.sn = c.s1 if (c.an is None or c.an is c.a1) else open_(c.an)
            c.row.device = (c.s1 or c.sn).device
            for _ in range(max(1, warmup)):
                (c.s1 or c.sn).run(x1 if c.s1 else x1.repeat(c.an.batch or 1, 0))
        c.row.memory_peak_mb = round(mem.peak_mb, 2) if mem.peak_mb is not None else None
        c.row.memory_method = mem.method
    except MsvitError as e:
        c.row.fail(str(e), "unavailable")
    except Exception as e:  # an artifact that exported but does not run: a failed check, not a crash
        c.row.fail(f"{type(e).__name__}: {e}"[:300])
