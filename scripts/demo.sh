#!/usr/bin/env bash
# Install the package and run the main job on the embedded default: synthesize Level-2A
# products on real tiles, build the archive, write the shards, train the reference ResNet on 2
# ranks with Horovod, evaluate on the test split and print the paper's Table 2 and 3 layouts.
# Everything lands in ./out/demo; a second run reuses what is done. Arguments go to
# `bigearth-sr demo` (see `bigearth-sr demo --help` to scale it up).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
bash scripts/setup.sh ""
mkdir -p build
# Horovod is built from source once and cached (build/wheels/); where it cannot be built the
# demo trains with torch.distributed instead, and says so
if ! bash scripts/build_horovod.sh > build/horovod-build.log 2>&1; then
    echo "note: Horovod could not be built here (see build/horovod-build.log); the demo trains with torch.distributed"
fi
echo "set-up (install, Horovod check): ${SECONDS} s; the demo says its own time at the end"
exec .venv/bin/bigearth-sr demo --out out/demo "$@"
