"""The environment block: what a latency number is meaningless without."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Any

from ..cpu import INT8_FEATURES, cpu_int8_features, cpu_name  # noqa: F401  (re-exported)
from ..version import package_versions

BACKENDS = ("msvit", "torch", "timm", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "executorch",
            "coremltools", "tensorrt", "scikit-learn", "matplotlib")


def versions() -> dict[str, str]:
    return package_versions(BACKENDS)


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
