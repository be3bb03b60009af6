"""benchmarks/gpu.sh, the GPU measurements in one go: on a machine without a GPU it says so and
exits 0 (with one, it runs: the session lent a GPU records its rows in benchmarks/RESULTS.md)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from .conftest import ROOT


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu.sh")]).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the script measures instead")
def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), str(tmp_path / "out.md")], capture_output=True,
                       text=True, timeout=120, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "no CUDA GPU here" in r.stdout and not (tmp_path / "out.md").exists()


def test_the_dsen2_scene_has_the_bands_at_their_resolutions():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_dsen2
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    b10, b20, b60 = gpu_dsen2.scene(120)
    assert b10.shape == (4, 120, 120) and b20.shape == (6, 60, 60) and b60.shape == (2, 20, 20)
    assert all(a.dtype == "float32" and a.min() >= 1 and a.max() <= 10000 for a in (b10, b20, b60))
