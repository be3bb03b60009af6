#!/usr/bin/env bash
# Build Horovod 0.28.1 (its latest release) against the torch in .venv and install it; the wheel
# is cached in build/wheels/ and reused. Idempotent.
#
#   bash scripts/build_horovod.sh            # CPU build: Gloo, no MPI (what the tests use)
#   HOROVOD_KIND=nccl bash scripts/build_horovod.sh   # GPU build: NCCL allreduce (CUDA machines)
#
# Why the patches and flags (measured): torch 2.14's headers need C++20, so horovod/torch asks
# for C++20 and the core for C++17 (both ask for C++14); the standard torch wheel is CUDA-enabled,
# so Horovod's CMake requires a CUDA toolkit (headers + cudart) even for a CPU build: CUDA_HOME
# and CUDAToolkit_ROOT point at one (found from CUDA_HOME, from an `nvcc` wrapper script that
# names its root, or from nvcc's own location). Needs cmake >= 3.13, a C++20 compiler, and
# for NCCL builds the NCCL headers/libs (the nvidia-nccl wheel torch installs provides them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VER=0.28.1
KIND=${HOROVOD_KIND:-cpu}
TORCH=$($PY -c "import torch; print(torch.__version__.split('+')[0])")
WHEELS=build/wheels/horovod-$VER-torch$TORCH-$KIND
if $PY - <<PYEOF 2>/dev/null
import horovod, horovod.torch as hvd, sys
sys.exit(0 if horovod.__version__ == "$VER" and hvd.gloo_built() else 1)
PYEOF
then
    echo "horovod $VER already installed"; exit 0
fi
if ! ls "$WHEELS"/horovod-*.whl >/dev/null 2>&1; then
    root=${CUDA_HOME:-}
    if [ -z "$root" ] && command -v nvcc >/dev/null; then
        nv=$(command -v nvcc)
        wrapped=$(grep -ao '/[^ "]*/bin/nvcc' "$nv" 2>/dev/null | head -1 || true)
        root=$(dirname "$(dirname "$(readlink -f "${wrapped:-$nv}")")")
    fi
    if [ -z "$root" ] || [ ! -f "$root/include/cuda_runtime.h" ]; then
        echo "build_horovod: no CUDA toolkit found (headers + cudart are needed even for a CPU build," >&2
        echo "because the torch wheel is CUDA-enabled); set CUDA_HOME to one" >&2
        exit 2
    fi
    echo "building horovod $VER ($KIND) against torch $TORCH with the CUDA toolkit at $root"
    src=build/src
    rm -rf "$src/horovod-$VER"; mkdir -p "$src" "$WHEELS"
    $PY -m pip download -q --no-binary :all: --no-deps "horovod==$VER" -d "$src"
    tar xzf "$src/horovod-$VER.tar.gz" -C "$src"
    sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' "$src/horovod-$VER/CMakeLists.txt"
    sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 20)/' "$src/horovod-$VER/horovod/torch/CMakeLists.txt"
    $PY -m pip install -q "cmake>=3.18,<4" packaging wheel psutil pyyaml cloudpickle
    export CUDA_HOME=$root CUDAToolkit_ROOT=$root
    export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
    export HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=gloo
    export CMAKE_POLICY_VERSION_MINIMUM=3.5 MAKEFLAGS=-j$(nproc)
    if [ "$KIND" = nccl ]; then
        nccl=$($PY -c "import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))" 2>/dev/null || true)
        export HOROVOD_GPU_OPERATIONS=NCCL ${nccl:+HOROVOD_NCCL_HOME=$nccl}
    fi
    PATH=$(dirname "$PY"):$PATH $PY -m pip wheel -q --no-build-isolation --no-deps -w "$WHEELS" "$src/horovod-$VER"
fi
$PY -m pip install -q --no-deps "$WHEELS"/horovod-*.whl
$PY -m pip install -q cloudpickle psutil pyyaml packaging
$PY -c "import horovod.torch as hvd; print('horovod', __import__('horovod').__version__, 'gloo', hvd.gloo_built(), 'nccl', hvd.nccl_built())"
