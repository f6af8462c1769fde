"""No network at run time: every third-party phone-home msvit can load is switched off here,
in-process, before that package is imported, with nothing written to the user's home.

``import msvit`` (and so every msvit CLI, the Python API and ``python -m msvit.*``) runs
:func:`disable_telemetry` first. The switches, one row per package that phones home by default:

==================  =================================================================================
package             switch
==================  =================================================================================
onnxruntime         ``ORT_DISABLE_TELEMETRY=1``: no 1DS events, no ``~/.cache/Microsoft/...`` store
openvino_telemetry  not importable in this process: NNCF and OpenVINO's converter then use their own
                    no-telemetry stubs (its only other opt-outs write a consent file into ``~/intel``
                    or set ``CI=true`` for everything), no ``~/intel/openvino_ga_cid``
Ray                 ``RAY_USAGE_STATS_ENABLED=0``
Hugging Face Hub    ``HF_HUB_DISABLE_TELEMETRY=1`` (``--pretrained`` downloads only what it is asked to)
others              ``DO_NOT_TRACK=1``, the convention many tools honour
==================  =================================================================================

Nothing in ``$HOME`` either: matplotlib (pytorch-grad-cam's and msvit-bench --plot's) would keep
its font cache in ``~/.cache/matplotlib`` and create ``~/.config/matplotlib``; ``MPLCONFIGDIR``
points it at ``<temp dir>/msvit-matplotlib-<uid>`` instead (reused by later runs: the font scan
takes seconds), unless the user set ``MPLCONFIGDIR`` or has a matplotlib config folder of their own
(then their settings apply, as without msvit).

Environment variables are inherited by subprocesses msvit starts (trtexec, converters).
"""
from __future__ import annotations

import os
import sys

#: the environment switches (name, value): set unconditionally, an earlier "on" is overridden
TELEMETRY_ENV: tuple[tuple[str, str], ...] = (
    ("ORT_DISABLE_TELEMETRY", "1"),
    ("RAY_USAGE_STATS_ENABLED", "0"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
    ("DO_NOT_TRACK", "1"),
)
#: modules that only send usage data: made unimportable, so their users fall back to stubs
BLOCKED_MODULES: tuple[str, ...] = ("openvino_telemetry",)


def _silence_loaded_openvino_telemetry() -> None:
    """openvino_telemetry was imported before msvit (a user's script imported nncf first): turn
    its singleton's consent off, which every send checks."""
    mod = sys.modules.get("openvino_telemetry")
    cls = getattr(mod, "Telemetry", None)
    inst = getattr(cls, "_SingletonMetaClass__single_instance", None) if cls is not None else None
    if inst is not None:
        inst.consent = False


def _matplotlib_dir() -> str | None:
    """Where matplotlib keeps its config and font cache for msvit (None: the user's own)."""
    import tempfile

    home_config = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "matplotlib")
    if os.environ.get("MPLCONFIGDIR") or os.path.isdir(home_config):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"msvit-matplotlib-{uid}")


def disable_telemetry() -> None:
    """Apply every switch of the table above (idempotent, cheap: imports nothing but tempfile)."""
    for name, value in TELEMETRY_ENV:
        os.environ[name] = value
    mpl = _matplotlib_dir()
    if mpl is not None:
        os.environ["MPLCONFIGDIR"] = mpl
    for name in BLOCKED_MODULES:
        if sys.modules.get(name) is not None:
            _silence_loaded_openvino_telemetry()
        else:
            sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError


disable_telemetry()
