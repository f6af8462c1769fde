#!/usr/bin/env bash
# The test command (README and CI run exactly this): install msvit with every
# CI-exercisable backend (the LiteRT converter included) into ./.venv, add the test-only
# DeepGuard oracle, run pytest. msvit-predict's BlazeFace models are msvit's own package data.
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
# the web app's tests drive Debian's Chromium through Playwright (never Playwright's browser
# download): install it when missing and we can (root + apt); else those tests skip, saying so
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "could not apt-get install chromium: the browser tests will skip" >&2
  else
    echo "no chromium (apt-get install chromium as root): the browser tests will skip" >&2
  fi
fi
# MediaPipe Tasks (Python) is the test-only reader of LiteRT's standard metadata: --no-deps, as its
# opencv-contrib-python would fight the opencv-python-headless msvit uses over the cv2 module
python -m pip install -q --no-deps "mediapipe==1.2.3"
lint-imports  # the layer contract (pyproject.toml): an import loop fails here
# tests/test_docs.py builds the docs site (mkdocs build --strict, offline) and tests/test_structure.py
# scans msvit/ for import loops through function-level imports, long modules and busy __init__s
python -m pytest -q --durations=15 "${select[@]}" "$@"
