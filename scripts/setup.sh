#!/usr/bin/env bash
# Create .venv and install the project (idempotent). Argument: the extras to install,
# comma-separated (default: everything the tests exercise; "" for the core package only).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${1-test,tfds,beam,hf,torchgeo}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
