"""Facts about this CPU that several layers need (INT8 planning, benchmarks, reports)."""
from __future__ import annotations

import platform

#: CPU features that int8 kernels need to beat fp32 (oneDNN, MLAS, XNNPACK); AVX2 alone
#: multiplies u8*s8 through 16-bit pairs (vpmaddubsw) and gains little over FMA fp32.
INT8_FEATURES = ("avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8", "asimddp", "i8mm")


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


def cpu_int8_features(cpuinfo: str | None = None) -> list[str]:
    """The INT8_FEATURES this CPU reports (Linux /proc/cpuinfo flags / Features); [] elsewhere."""
    flags = cpu_flags(cpuinfo)
    return [f for f in INT8_FEATURES if f in flags]


#: CPU features that reduced-float kernels need to execute bf16 / fp16 arithmetic (not just
#: convert it: F16C only converts, so fp16 there is storage, computed in fp32).
FLOAT16_FEATURES = ("avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16", "f16c", "fphp", "asimdhp", "bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """Every flag this CPU reports (Linux /proc/cpuinfo flags / Features); empty elsewhere."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, val = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(val.split())
    return flags


def cpu_float16_features(cpuinfo: str | None = None) -> list[str]:
    """The FLOAT16_FEATURES this CPU reports ([] where /proc/cpuinfo is absent)."""
    flags = cpu_flags(cpuinfo)
    return [f for f in FLOAT16_FEATURES if f in flags]


def cpu_vector_summary(cpuinfo: str | None = None) -> str:
    """"avx2 fma f16c" style: the flags that decide int8/bf16/fp16 speed, printed beside timings."""
    flags = cpu_flags(cpuinfo)
    keys = ("avx2", "fma", "avx512f", *INT8_FEATURES, *FLOAT16_FEATURES)
    return " ".join(k for k in dict.fromkeys(keys) if k in flags) or "unknown"
