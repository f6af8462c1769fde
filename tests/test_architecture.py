"""The layer contract (import-linter): it holds for the tree, and it catches a planted loop."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    if not LINT.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    dst = tmp_path_factory.mktemp("tree")
    shutil.copytree(ROOT / "msvit", dst / "msvit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_layers_hold(tree_copy):
    r = _lint(tree_copy)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


@pytest.mark.parametrize("module, planted, contract", [
    ("runtime/base.py", "from ..export import targets", "msvit layers"),  # a lower layer importing a higher one
    ("runtime/onnx.py", "from . import tensorrt", "no import loops"),  # with the reverse import below
])
def test_planted_loop_is_caught(tree_copy, tmp_path, module, planted, contract):
    root = tmp_path / "t"
    shutil.copytree(tree_copy, root)
    with open(root / "msvit" / module, "a") as f:
        f.write(f"\n{planted}  # planted\n")
    if "tensorrt" in planted:
        with open(root / "msvit" / "runtime" / "tensorrt.py", "a") as f:
            f.write("\nfrom . import onnx  # planted\n")
    r = _lint(root)
    assert r.returncode != 0
    assert "BROKEN" in r.stdout and contract in r.stdout.replace("\n", " ")
