"""NVIDIA Jetson: detection, L4T/nvpmodel/clock state, and power sampling (INA3221 rails in
sysfs, or ``tegrastats`` lines). Every reader takes a ``root`` path or the text itself, so
it is tested on recorded lines and fake sysfs trees without a device."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

#: rails that measure the whole module input, best first (Orin / Xavier / Nano / TX2)
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0", "VDD_5V_IN", "VIN")

_DEVFREQ_GPU = re.compile(r"gpu|ga10b|gv11b|gp10b|gm20b|gk20a", re.I)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


# ---------------------------------------------------------------- detection

@dataclass
class JetsonInfo:
    model: str  # /proc/device-tree/model
    l4t: str | None  # e.g. "R36.3.0"
    nvpmodel: dict[str, Any] | None = None  # {"mode": "15W", "id": 2}
    clocks_locked: bool | None = None
    clocks_detail: str = ""
    tensorrt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_l4t_release(text: str) -> str | None:
    """'# R35 (release), REVISION: 4.1, GCID: ...' -> 'R35.4.1'."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def detect_jetson(root: str | os.PathLike = "/") -> JetsonInfo | None:
    """A Jetson has /etc/nv_tegra_release or a device-tree model naming NVIDIA/Jetson."""
    root = Path(root)
    rel = _read(root / "etc" / "nv_tegra_release")
    model = _read(root / "proc" / "device-tree" / "model") or ""
    if rel is None and not re.search(r"jetson|nvidia", model, re.I):
        return None
    l4t = parse_l4t_release(rel) if rel else None
    locked, detail = clocks_locked(root)
    return JetsonInfo(model=model or "unknown Jetson", l4t=l4t, clocks_locked=locked, clocks_detail=detail)


def parse_nvpmodel(text: str) -> dict[str, Any] | None:
    """``nvpmodel -q`` output: 'NV Power Mode: 15W\\n2' -> {'mode': '15W', 'id': 2}."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    if not m:
        return None
    ids = re.findall(r"^\s*(\d+)\s*$", text, re.M)
    return {"mode": m.group(1), "id": int(ids[-1]) if ids else None}


def query_nvpmodel() -> dict[str, Any] | None:
    exe = shutil.which("nvpmodel")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvpmodel(out)


def clocks_locked(root: str | os.PathLike = "/") -> tuple[bool | None, str]:
    """(locked?, detail): min == max frequency for every CPU and the GPU devfreq.

    This is what ``jetson_clocks`` sets; None when no frequency files are readable.
    """
    root = Path(root)
    # (label, min file, max file, unit) per clock domain: every CPU's cpufreq, the GPU devfreq
    domains = [(d.parent.name, d / "scaling_min_freq", d / "scaling_max_freq", "kHz")
               for d in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))]
    domains += [(f"GPU {d.name}", d / "min_freq", d / "max_freq", "Hz")
                for d in sorted((root / "sys/class/devfreq").glob("*")) if _DEVFREQ_GPU.search(d.name)]
    loose: list[str] = []
    seen = 0
    for label, lo_f, hi_f, unit in domains:
        lo, hi = _read(lo_f), _read(hi_f)
        if lo is None or hi is None:
            continue
        seen += 1
        if lo != hi:
            loose.append(f"{label} {lo}-{hi} {unit}")
    if not seen:
        return None, "no cpufreq/devfreq files readable"
    if loose:
        return False, "not locked (run sudo jetson_clocks): " + "; ".join(loose[:4])
    return True, f"locked: min == max on {seen} clock domains"


# ---------------------------------------------------------------- power rails

_NEW = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW")
_OLD = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)/(\d+)(?=\s|$)")


def parse_tegrastats(line: str) -> dict[str, tuple[float, float]]:
    """Rails of one tegrastats line -> {name: (current mW, running average mW)}.

    JetPack 5/6: 'VDD_IN 5012mW/4980mW'; JetPack 4: 'POM_5V_IN 3456/3400' (mW, no unit).
    'RAM 1234/3964MB' and similar carry a unit suffix and are not rails.
    """
    rails = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in _NEW.finditer(line)}
    if not rails:
        rails = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in _OLD.finditer(line)
                 if m.group(1).startswith(("POM_", "VDD_", "VIN"))}
    return rails


def total_power_mw(rails: dict[str, float]) -> tuple[float, str] | None:
    """(mW, how): the module-input rail when present, else the sum of the rails."""
    if not rails:
        return None
    for name in INPUT_RAILS:
        if name in rails:
            return rails[name], name
    return sum(rails.values()), "sum of " + "+".join(sorted(rails))


@dataclass
class SysfsRail:
    name: str
    power: Path | None = None  # mW (iio in_power*_input)
    voltage: Path | None = None  # mV (hwmon in*_input)
    current: Path | None = None  # mA (hwmon curr*_input)

    def read_mw(self) -> float | None:
        if self.power is not None:
            v = _read(self.power)
            return float(v) if v else None
        v, i = _read(self.voltage) if self.voltage else None, _read(self.current) if self.current else None
        if not v or not i:
            return None
        return float(v) * float(i) / 1000.0  # mV * mA = µW -> mW


def find_sysfs_rails(root: str | os.PathLike = "/") -> list[SysfsRail]:
    """INA3221 rails: hwmon (JetPack 5/6: in*_label/in*_input mV, curr*_input mA) or
    iio (JetPack 4: rail_name_N / in_power N_input mW)."""
    root = str(root).rstrip("/")
    rails: list[SysfsRail] = []
    for hw in sorted(glob.glob(f"{root}/sys/bus/i2c/drivers/ina3221*/*/hwmon/hwmon*")):
        for lab in sorted(glob.glob(f"{hw}/in*_label")):
            n = re.search(r"in(\d+)_label$", lab).group(1)
            name = (_read(Path(lab)) or "").strip()
            v, c = Path(hw, f"in{n}_input"), Path(hw, f"curr{n}_input")
            if name and "sum" not in name.lower() and v.exists() and c.exists():
                rails.append(SysfsRail(name, voltage=v, current=c))
    for dev in sorted(glob.glob(f"{root}/sys/bus/i2c/drivers/ina3221*/*/iio:device*")):
        for pw in sorted(glob.glob(f"{dev}/in_power*_input")):
            n = re.search(r"in_power(\d+)_input$", pw).group(1)
            name = _read(Path(dev, f"rail_name_{n}")) or f"rail{n}"
            rails.append(SysfsRail(name, power=Path(pw)))
    return rails


def read_sysfs_power(rails: list[SysfsRail]) -> dict[str, float]:
    out = {}
    for r in rails:
        mw = r.read_mw()
        if mw is not None:
            out[r.name] = mw
    return out


class PowerSampler:
    """Background sampler of total board power while a block runs (a context manager).

    ``source`` is 'sysfs' (INA3221 rails read directly, every ``interval`` s) or 'tegrastats'
    (a ``tegrastats --interval`` subprocess parsed line by line). ``avg_w`` is the mean over samples.
    """

    def __init__(self, root: str | os.PathLike = "/", interval: float = 0.05,
                 reader: Callable[[], dict[str, float]] | None = None) -> None:
        self.interval = interval
        self.samples_mw: list[float] = []
        self.rail: str = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        rails = find_sysfs_rails(root) if reader is None else []
        if reader is not None:
            self.source, self._reader = "custom", reader
        elif rails:
            self.source, self._reader = "sysfs", (lambda: read_sysfs_power(rails))
        elif shutil.which("tegrastats"):
            self.source, self._reader = "tegrastats", None
        else:
            self.source, self._reader = "none", None

    @property
    def available(self) -> bool:
        return self.source != "none"

    @property
    def avg_w(self) -> float | None:
        return sum(self.samples_mw) / len(self.samples_mw) / 1000.0 if self.samples_mw else None

    def _add(self, rails: dict[str, float]) -> None:
        tot = total_power_mw(rails)
        if tot is not None:
            self.samples_mw.append(tot[0])
            self.rail = tot[1]

    def _poll(self) -> None:
        while True:
            self._add(self._reader())
            if self._stop.wait(self.interval):
                break

    def _tail(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if self._stop.is_set():
                break
            self._add({k: cur for k, (cur, _avg) in parse_tegrastats(line).items()})

    def __enter__(self) -> "PowerSampler":
        self.samples_mw.clear()
        self._stop.clear()
        if self._reader is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True)
        elif self.source == "tegrastats":
            ms = max(10, int(self.interval * 1000))
            self._proc = subprocess.Popen(["tegrastats", "--interval", str(ms)], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._tail, daemon=True)
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._proc = self._thread = None


def energy_mj(avg_w: float | None, ms_per_image: float | None) -> float | None:
    """Energy per inference: W x ms = mJ."""
    if avg_w is None or ms_per_image is None:
        return None
    return avg_w * ms_per_image
