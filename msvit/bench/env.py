"""The environment block: what a latency number is meaningless without."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

BACKENDS = ("msvit", "torch", "timm", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "executorch",
            "coremltools", "tensorrt", "scikit-learn", "matplotlib")


def cpu_name() -> str:
    try:  # py-cpuinfo knows ARM/x86 brand strings; /proc/cpuinfo is the fallback
        import cpuinfo

        name = cpuinfo.get_cpu_info().get("brand_raw")
        if name:
            return name
    except Exception:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: CPU features that int8 kernels need to beat fp32 (oneDNN, MLAS, XNNPACK); AVX2 alone
#: multiplies u8*s8 through 16-bit pairs (vpmaddubsw) and gains little over FMA fp32.
INT8_FEATURES = ("avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8", "asimddp", "i8mm")


def cpu_int8_features(cpuinfo: str | None = None) -> list[str]:
    """The INT8_FEATURES this CPU reports (Linux /proc/cpuinfo flags / Features); [] elsewhere."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, val = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(val.split())
    return [f for f in INT8_FEATURES if f in flags]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in BACKENDS:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def gpu_info() -> dict[str, Any] | None:
    try:
        import torch

        if torch.cuda.is_available():
            i = torch.cuda.current_device()
            return {"name": torch.cuda.get_device_name(i),
                    "compute_capability": "%d.%d" % torch.cuda.get_device_capability(i),
                    "cuda": torch.version.cuda}
    except Exception:
        pass
    return None


def collect(threads: int | None, device: str) -> dict[str, Any]:
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_int8_features": cpu_int8_features(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": physical,
        "cpu_cores_usable": affinity,
        "gpu": gpu_info(),
        "device": device,
        "threads": threads,
        "versions": versions(),
        "jetson": None,
    }
