"""The build on MPI ranks (mpirun -n 2) gives the archive a single process gives."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_builder.build import ARCHIVE_NAME

from .conftest import assert_same_archive


def test_mpirun_two_ranks(built, products, tmp_path):
    pytest.importorskip("mpi4py")
    mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("no mpirun (pip install mpich)")
    out = tmp_path / "mpi"
    cmd = [mpirun, "-n", "2", sys.executable, "-m", "bigearth_cli.cli", "build", *map(str, products),
           "--out", str(out), "--engine", "mpi", "--no-progress", "--upsampling", "bilinear", *[a for c in built[2].clc for a in ("--clc", c)]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_archive(Path(built[0]) / ARCHIVE_NAME, out / ARCHIVE_NAME)


@pytest.mark.parametrize("engine", ["local", "mpi"])
def test_a_failing_worker_ends_the_job(built, products, tmp_path, engine):
    """--strict with a corrupt product: the job stops with the file named, never hangs."""
    from .conftest import copy_products

    copies = copy_products(products, tmp_path)
    bad = next(copies[2].rglob("*_B03_10m.jp2"))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])
    args = [*map(str, copies), "--out", str(tmp_path / "o"), "--strict", "--no-progress",
            *[a for c in built[2].clc for a in ("--clc", c)]]
    if engine == "mpi":
        pytest.importorskip("mpi4py")
        mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun")
        if mpirun is None:
            pytest.skip("no mpirun (pip install mpich)")
        cmd = [mpirun, "-n", "2", sys.executable, "-m", "bigearth_cli.cli", "build", *args, "--engine", "mpi"]
    else:
        cmd = [sys.executable, "-m", "bigearth_cli.cli", "build", *args, "--workers", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode != 0
    assert bad.name in r.stdout + r.stderr, f"exit {r.returncode}: {r.stdout[-1500:]} {r.stderr[-1500:]}"
    assert not (tmp_path / "o" / ARCHIVE_NAME).exists()
