#!/usr/bin/env bash
# Every GPU measurement the project asks for, in one go on one CUDA GPU (about 8 minutes), written
# to benchmarks/gpu_results.md (or $1): DSen2 per full tile in fp32 and bf16 with its output
# against the CPU's (benchmarks/gpu_dsen2.py); the trainer's images/s, ResNet-50 on 12 x 120 x 120,
# fp32 and AMP bf16 + channels-last, in memory and fed by the shard pipeline (benchmarks/trainer.py);
# one DDP step; the NCCL Horovod build and one Horovod step. Each step has its own time limit and
# says when it fails; the others still run. On a machine without a GPU it says so and exits 0.
#
#   bash scripts/setup.sh && bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/gpu_results.md}
PY=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu.sh: no CUDA GPU here (torch.cuda.is_available() is False): nothing measured"
    exit 0
fi
W=${GPU_WORK:-$(mktemp -d)}
: > "$OUT"
log() { echo "$*" | tee -a "$OUT"; }
step() {  # step NAME SECONDS COMMAND...: run with a limit, its output into the results
    local name=$1 limit=$2; shift 2
    log ""; log "## $name"; log ""
    local t0=$SECONDS
    if timeout "$limit" "$@" > "$W/step.log" 2>&1; then
        grep -v '^\s*$' "$W/step.log" | tail -n 25 | tee -a "$OUT" > /dev/null
        log ""; log "($name: $((SECONDS - t0)) s)"
    else
        log "$name: FAILED or over ${limit} s (exit $?); last lines:"; tail -n 15 "$W/step.log" | tee -a "$OUT" > /dev/null
    fi
}
log "# GPU measurements ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
log ""
log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
log "$("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"

step "DSen2 per full tile (CUDA fp32, bf16; default and paper models; adapted) and against the CPU" 360 "$PY" benchmarks/gpu_dsen2.py

# shards for the trainer: 4 synthetic products of 12 km, bilinear (the loader, not the method, is measured)
step "shards for the trainer" 150 bash -c "'$BIN/bigearth-sr' synth --out '$W/products' --products 4 > /dev/null && \
    '$BIN/bigearth-sr' build '$W'/products/*.SAFE --clc '$W/products' --out '$W/dataset' --upsampling bilinear \
        --no-progress > /dev/null && \
    '$BIN/bigearth-sr' shards '$W/dataset/bigearth_sr.h5' --out '$W/shards' --shard-size 32MiB --no-progress"

step "trainer images/s (ResNet-50, fp32 and AMP bf16 + channels-last)" 150 \
    "$PY" benchmarks/trainer.py --data "$W/shards" --arch resnet50 --batch-size 64 --steps 30 --warmup 5 --device cuda

step "one DDP step (torchrun, NCCL, 1 process)" 90 "$BIN/torchrun" --nproc_per_node 1 -m reference_train.train \
    --engine ddp --device cuda --data "$W/shards" --output-dir "$W/ddp" --arch resnet50 --epochs 1 \
    --steps-per-epoch 2 --batch-size 32 --amp bf16 --channels-last --val-split ''

step "Horovod built with NCCL" 420 env HOROVOD_KIND=nccl bash scripts/build_horovod.sh
step "one Horovod step (NCCL, 1 process)" 90 "$BIN/horovodrun" -np 1 -H localhost:1 "$PY" -m reference_train.train \
    --engine horovod --device cuda --data "$W/shards" --output-dir "$W/hvd" --arch resnet50 --epochs 1 \
    --steps-per-epoch 2 --batch-size 32 --amp bf16 --channels-last --val-split ''
log ""
log "(work folder: $W)"
echo "gpu.sh: results in $OUT"
