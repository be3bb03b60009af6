#!/usr/bin/env bash
# Install everything and run the main job on the embedded default: synthesize Level-2A
# products on real tiles, build the archive, write the shards, print a summary. Output in ./out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh ""
exec .venv/bin/bigearth-sr demo --out out/demo "$@"
