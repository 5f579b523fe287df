#!/usr/bin/env bash
# ansible-test bootstraps pip into the venvs it makes with a get-pip script from a host that
# CI cannot reach. It looks for a cached copy first: put a small stand-in there that installs
# from PyPI's pip wheel instead (see docs/DEVELOPING.md, "ansible-test offline").
set -euo pipefail
PIP_VERSION=24.2
cache="$HOME/.ansible/test/cache"
script="$cache/get_pip_${PIP_VERSION//./_}.py"
wheel="$cache/pip-$PIP_VERSION-py3-none-any.whl"
mkdir -p "$cache"
if [ ! -f "$wheel" ]; then
  "${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: -d "$cache" "pip==$PIP_VERSION"
fi
cat > "$script" <<PY
"""Stand-in for get-pip.py: installs pip from the wheel beside this file, then the packages asked for."""
import os
import runpy
import sys

WHEEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-$PIP_VERSION-py3-none-any.whl")
sys.path.insert(0, WHEEL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.argv = ["pip", "install", WHEEL] + args
runpy.run_module("pip", run_name="__main__", alter_sys=True)
PY
