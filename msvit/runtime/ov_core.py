"""The process's one OpenVINO ``Core`` (every msvit use of OpenVINO goes through :func:`core`).

Why one: each ``Core`` loads its own CPU-plugin instance, and each instance installs a
signal alternate stack on the thread that created it, restoring the previous one when it is
destroyed. Plugins destroyed out of creation order (session A opened, B opened, A closed, B
closed) leave the thread's alternate stack pointing at freed memory, and the next signal
(Ctrl-C, SIGTERM) then kills the process with SIGSEGV instead of running its handler (measured
with OpenVINO 2026.4: tests/test_precision.py + an in-process SIGTERM). A Core that lives as
long as the process never unwinds that stack. Sharing it is also what OpenVINO recommends."""
from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=None)
def core() -> Any:
    """The shared ``openvino.Core`` (created on first use)."""
    import openvino as ov

    return ov.Core()
