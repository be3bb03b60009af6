#!/usr/bin/env bash
# Install everything (extras for TFDS, Beam and Hugging Face; Horovod built from source, the
# wheel cached in build/wheels/) and run the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build_horovod.sh
exec .venv/bin/python -m pytest -q -n 2 --dist loadgroup "$@"
