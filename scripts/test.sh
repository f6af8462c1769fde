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
# LiteRT's converter (the [litert] extra) pins typing-extensions<4.13 through xdsl, which would
# downgrade packages the rest of msvit uses: it gets a venv of its own layered over .venv (a .pth
# adds .venv's site-packages after its own), and tests/test_litert.py runs there as well.
[ -x .venv-litert/bin/python ] || python3 -m venv .venv-litert
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
echo "import site; site.addsitedir('$(python -c "$purelib")')" \
  > "$(.venv-litert/bin/python -c "$purelib")/zz_msvit_main_venv.pth"
.venv-litert/bin/python -m pip install -q -e ".[litert]"
lint-imports  # the layer contract (pyproject.toml): an import loop fails here
python -m pytest -q --durations=15 "$@"
if [ $# -eq 0 ]; then  # the LiteRT converter's tests, skipped above for want of litert-torch
  .venv-litert/bin/python -m pytest -q tests/test_litert.py
fi
