"""Jetson detection, clock and power parsing on recorded tegrastats lines and fake sysfs trees.
Nothing here pretends a run happened on a Jetson: only the readers and decisions are tested."""
from __future__ import annotations

from pathlib import Path

import pytest

from msvit.bench import jetson

ORIN = ("11-28-2025 10:00:00 RAM 2301/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [12%@1510,3%@1510,"
        "0%@1510,1%@1510,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 61%@[624] NVENC off cpu@48.5C soc2@46.1C "
        "VDD_IN 5012mW/4980mW VDD_CPU_GPU_CV 1234mW/1200mW VDD_SOC 1500mW/1490mW")
NANO = ("RAM 1713/3964MB (lfb 197x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) CPU [5%@1479,2%@1479,"
        "1%@1479,3%@1479] EMC_FREQ 3%@1600 GR3D_FREQ 0%@921 APE 25 PLL@32C CPU@35C PMIC@100C GPU@33C "
        "AO@41.5C thermal@34C POM_5V_IN 3456/3400 POM_5V_GPU 166/166 POM_5V_CPU 664/660")


def _w(p: Path, text: str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_tegrastats_new_format():
    rails = jetson.parse_tegrastats(ORIN)
    assert rails == {"VDD_IN": (5012, 4980), "VDD_CPU_GPU_CV": (1234, 1200), "VDD_SOC": (1500, 1490)}
    assert jetson.total_power_mw({k: v[0] for k, v in rails.items()}) == (5012, "VDD_IN")


def test_tegrastats_old_format_ignores_memory_fields():
    rails = jetson.parse_tegrastats(NANO)
    assert rails == {"POM_5V_IN": (3456, 3400), "POM_5V_GPU": (166, 166), "POM_5V_CPU": (664, 660)}
    assert jetson.total_power_mw({k: v[1] for k, v in rails.items()}) == (3400, "POM_5V_IN")


def test_total_without_input_rail_sums():
    mw, how = jetson.total_power_mw({"VDD_GPU": 1000.0, "VDD_CPU": 500.0})
    assert mw == 1500 and how.startswith("sum of")
    assert jetson.total_power_mw({}) is None
    assert jetson.parse_tegrastats("RAM 1/2MB nothing here") == {}


def test_l4t_and_nvpmodel_parsing():
    assert jetson.parse_l4t_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, "
                                    "EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023") == "R35.4.1"
    assert jetson.parse_l4t_release("garbage") is None
    assert jetson.parse_nvpmodel("NV Power Mode: 15W\n2\n") == {"mode": "15W", "id": 2}
    assert jetson.parse_nvpmodel("NV Power Mode: MAXN_SUPER\n") == {"mode": "MAXN_SUPER", "id": None}
    assert jetson.parse_nvpmodel("command not found") is None


def _fake_orin(root: Path, locked: bool) -> None:
    _w(root / "etc/nv_tegra_release", "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic\n")
    _w(root / "proc/device-tree/model", "NVIDIA Jetson Orin Nano Developer Kit\x00")
    for i in range(2):
        d = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        _w(d / "scaling_min_freq", "1510400" if locked else "115200")
        _w(d / "scaling_max_freq", "1510400")
    g = root / "sys/class/devfreq/17000000.ga10b"
    _w(g / "min_freq", "624750000" if locked else "306000000")
    _w(g / "max_freq", "624750000")
    _w(root / "sys/class/devfreq/15340000.vic/min_freq", "1")  # not a GPU: ignored
    _w(root / "sys/class/devfreq/15340000.vic/max_freq", "2")


@pytest.mark.parametrize("locked", [True, False])
def test_detect_and_clocks(tmp_path, locked):
    _fake_orin(tmp_path, locked)
    info = jetson.detect_jetson(tmp_path)
    assert info is not None and info.l4t == "R36.3.0" and "Orin Nano" in info.model
    assert info.clocks_locked is locked
    assert ("jetson_clocks" in info.clocks_detail) is (not locked)


def test_not_a_jetson(tmp_path):
    _w(tmp_path / "proc/device-tree/model", "Raspberry Pi 4 Model B\x00")
    assert jetson.detect_jetson(tmp_path) is None
    assert jetson.detect_jetson(tmp_path / "empty") is None
    assert jetson.clocks_locked(tmp_path) == (None, "no cpufreq/devfreq files readable")


def test_sysfs_hwmon_rails(tmp_path):
    hw = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    for n, (name, mv, ma) in enumerate([("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 200),
                                        ("sum of shunt voltages", 0, 0)], start=1):
        _w(hw / f"in{n}_label", name + "\n")
        _w(hw / f"in{n}_input", str(mv))
        _w(hw / f"curr{n}_input", str(ma))
    rails = jetson.find_sysfs_rails(tmp_path)
    assert [r.name for r in rails] == ["VDD_IN", "VDD_CPU_GPU_CV"]
    assert jetson.read_sysfs_power(rails) == {"VDD_IN": 5000.0, "VDD_CPU_GPU_CV": 1000.0}
    s = jetson.PowerSampler(tmp_path, interval=0.01)
    assert s.source == "sysfs"
    with s:
        pass  # the poller takes at least one sample before it can stop
    assert s.avg_w == pytest.approx(5.0) and s.rail == "VDD_IN"
    assert jetson.energy_mj(s.avg_w, 20.0) == pytest.approx(100.0)  # 5 W x 20 ms = 100 mJ


def test_sysfs_iio_rails(tmp_path):
    dev = tmp_path / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for n, (name, mw) in enumerate([("POM_5V_IN", 3400), ("POM_5V_GPU", 160)]):
        _w(dev / f"rail_name_{n}", name)
        _w(dev / f"in_power{n}_input", str(mw))
    rails = jetson.find_sysfs_rails(tmp_path)
    assert jetson.read_sysfs_power(rails) == {"POM_5V_IN": 3400.0, "POM_5V_GPU": 160.0}


def test_no_rails_means_no_power(tmp_path, monkeypatch):
    monkeypatch.setattr(jetson.shutil, "which", lambda name: None)
    s = jetson.PowerSampler(tmp_path)
    assert not s.available and s.avg_w is None
    assert jetson.energy_mj(None, 10.0) is None


def test_off_jetson_device_is_a_clear_error(tmp_path, capsys):
    from msvit.bench import DeviceUnavailableError, run
    from msvit.bench.cli import main

    with pytest.raises(DeviceUnavailableError, match="not an NVIDIA Jetson"):
        run(device="jetson", jetson_root=tmp_path, targets=[], log=None, progress=False)
    if jetson.detect_jetson("/") is None:
        assert main(["--device", "jetson", "--quiet"]) == DeviceUnavailableError.exit_code == 3
        assert "not an NVIDIA Jetson" in capsys.readouterr().err
