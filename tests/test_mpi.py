"""The build on MPI ranks (mpirun -n 2) gives the archive a single process gives: with the
progress lines on and off, with one input bad, after a rank was killed, and through the SLURM
script in its single-node form."""
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataset_builder.build import ARCHIVE_NAME, MANIFEST_NAME

from .conftest import ROOT, assert_same_archive, copy_products


def _mpirun() -> str:
    pytest.importorskip("mpi4py")
    mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("no mpirun (pip install mpich)")
    return mpirun


def _build_cmd(products, out, built, *extra) -> list[str]:
    return [sys.executable, "-m", "bigearth_cli.cli", "build", *map(str, products), "--out", str(out),
            "--upsampling", "bilinear", *[a for c in built[2].clc for a in ("--clc", c)], *extra]


@pytest.mark.parametrize("progress", [True, False], ids=["progress", "no-progress"])
def test_mpirun_two_ranks(built, products, tmp_path, progress):
    """The crash this guards against: with progress shown, every rank failed after its first tile."""
    out = tmp_path / "mpi"
    cmd = [_mpirun(), "-n", "2", *_build_cmd(products, out, built, "--engine", "mpi",
                                             *([] if progress else ["--no-progress"]))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_archive(Path(built[0]) / ARCHIVE_NAME, out / ARCHIVE_NAME)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("[rank ")]
    if progress:  # one line per tile, each rank counting its own tiles
        assert len(lines) == len(products), r.stderr
        assert {ln.split("]")[0] for ln in lines} == {"[rank 0", "[rank 1"}, r.stderr
    else:
        assert lines == [], r.stderr


def test_mpi_without_mpirun_is_one_rank(built, products, tmp_path):
    """--engine mpi started alone (a singleton MPI world) builds everything on its one rank."""
    pytest.importorskip("mpi4py")
    out = tmp_path / "single"
    r = subprocess.run(_build_cmd(products, out, built, "--engine", "mpi"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_archive(Path(built[0]) / ARCHIVE_NAME, out / ARCHIVE_NAME)


def test_one_bad_input_fails_alone_on_its_rank(built, products, tmp_path):
    """A damaged product is named and the other ranks' tiles built: the archive the local engine
    gives from the same inputs, bit for bit."""
    copies = copy_products(products, tmp_path)
    bad = next(copies[1].rglob("*_B03_10m.jp2"))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])
    mpi = subprocess.run([_mpirun(), "-n", "2", *_build_cmd(copies, tmp_path / "mpi", built, "--engine", "mpi")],
                         capture_output=True, text=True, timeout=300)
    local = subprocess.run(_build_cmd(copies, tmp_path / "local", built, "--workers", "1", "--no-progress"),
                           capture_output=True, text=True, timeout=300)
    for r in (mpi, local):
        assert r.returncode == 1, r.stdout + r.stderr  # an input failed, the others were built
        assert copies[1].name.removesuffix(".SAFE") in r.stdout + r.stderr
    assert_same_archive(tmp_path / "local" / ARCHIVE_NAME, tmp_path / "mpi" / ARCHIVE_NAME)
    manifest = json.loads((tmp_path / "mpi" / MANIFEST_NAME).read_text())
    assert list(manifest["tiles_failed"]) == [copies[1].name.removesuffix(".SAFE")]
    assert manifest["tiles_ok"] == len(copies) - 1


def test_a_killed_rank_is_resumed(built, products, tmp_path):
    """SIGKILL the ranks once the first tile's part is recorded: the rerun reuses that part and
    ends with the archive of an uninterrupted build."""
    out = tmp_path / "o"
    cmd = [_mpirun(), "-n", "2", *_build_cmd(products, out, built, "--engine", "mpi")]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not [m for m in (out / "parts").glob("*.json") if not m.name.startswith(".")]:
            assert p.poll() is None, p.stdout.read().decode()
            assert time.monotonic() < deadline, "no tile finished in 240 s"
            time.sleep(0.01)
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # mpirun, its proxies and both ranks
        p.wait()
        p.stdout.close()
    assert not (out / ARCHIVE_NAME).exists()
    done = {m.stem for m in (out / "parts").glob("*.json") if not m.name.startswith(".")}
    # the killed run's .lock is left behind: an flock dies with its process, so it holds nothing
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    resumed = [ln for ln in r.stderr.splitlines() if ln.startswith("[rank ") and "resumed" in ln]
    assert resumed and all(any(d in ln for d in done) for ln in resumed[:1]), r.stderr
    assert_same_archive(Path(built[0]) / ARCHIVE_NAME, out / ARCHIVE_NAME)


def test_sigterm_stops_every_rank_in_one_line_and_the_rerun_resumes(built, products, tmp_path):
    """SIGTERM to mpirun and both ranks (SLURM's scancel and time limit signal the whole step) once
    the first part is recorded: every rank says the one line, the run exits 143, no lock or
    temporary is left, and the rerun ends with the archive of an uninterrupted build."""
    out = tmp_path / "o"
    cmd = [_mpirun(), "-n", "2", *_build_cmd(products, out, built, "--engine", "mpi", "--no-progress")]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not [m for m in (out / "parts").glob("*.json") if not m.name.startswith(".")]:
        assert p.poll() is None, p.communicate()[1]
        assert time.monotonic() < deadline, "no tile finished in 240 s"
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.startswith("stopped by SIGTERM")]
    assert p.returncode == 143 and len(lines) == 2 and "Traceback" not in err, err[-3000:]
    assert not [q for q in out.rglob("*") if q.name.endswith(".tmp") or q.name == ".lock"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_archive(Path(built[0]) / ARCHIVE_NAME, out / ARCHIVE_NAME)


@pytest.mark.parametrize("stopped", [False, True], ids=["whole", "stopped-at-its-time-limit"])
def test_the_slurm_build_script_on_one_node(built, products, tmp_path, stopped):
    """The sbatch script of the build, run as SLURM would run it on one node, with ``srun``
    standing for mpirun (a shim on PATH: the script itself is run unchanged). Stopped: SIGTERM to
    the batch shell alone, as ``--signal=B:TERM@120`` sends it, once a part is recorded: the ranks
    stop cleanly (143) and the script run again ends with the whole archive."""
    mpirun = _mpirun()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "srun"
    # srun's own options (--mpi=..., --cpu-bind=...) are srun's: mpirun takes the task count only
    shim.write_text("#!/bin/sh\nwhile [ \"${1#--}\" != \"$1\" ]; do shift; done\n"
                    f"exec {mpirun} -n \"$SLURM_NTASKS\" \"$@\"\n")
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "slurm"
    env = dict(os.environ, PATH=f"{bindir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
               SLURM_SUBMIT_DIR=str(ROOT), SLURM_NTASKS="2", SLURM_CPUS_PER_TASK="1", SLURM_JOB_ID="1",
               BIGEARTH_PYTHON=sys.executable)
    args = [*map(str, products), "--upsampling", "bilinear", *[a for c in built[2].clc for a in ("--clc", c)]]
    script = ["bash", str(ROOT / "dataset_builder" / "slurm" / "build_mpi.sbatch"), str(out), *args]
    if stopped:
        p = subprocess.Popen([*script, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, cwd=tmp_path)
        deadline = time.monotonic() + 240
        while not [m for m in (out / "parts").glob("*.json") if not m.name.startswith(".")]:
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1][-3000:]
            time.sleep(0.01)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 143 and "stopped by SIGTERM" in err and "Traceback" not in err, err[-3000:]
        assert not (out / ARCHIVE_NAME).exists() and not (out / ".lock").exists()
    r = subprocess.run(script, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_archive(Path(built[0]) / ARCHIVE_NAME, out / ARCHIVE_NAME)


@pytest.mark.parametrize("engine", ["local", "mpi"])
def test_a_failing_worker_ends_the_job(built, products, tmp_path, engine):
    """--strict with a corrupt product: the job stops with the file named, never hangs."""
    copies = copy_products(products, tmp_path)
    bad = next(copies[2].rglob("*_B03_10m.jp2"))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])
    args = [*map(str, copies), "--out", str(tmp_path / "o"), "--strict", "--no-progress",
            *[a for c in built[2].clc for a in ("--clc", c)]]
    if engine == "mpi":
        cmd = [_mpirun(), "-n", "2", sys.executable, "-m", "bigearth_cli.cli", "build", *args, "--engine", "mpi"]
    else:
        cmd = [sys.executable, "-m", "bigearth_cli.cli", "build", *args, "--workers", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode != 0
    assert bad.name in r.stdout + r.stderr, f"exit {r.returncode}: {r.stdout[-1500:]} {r.stderr[-1500:]}"
    assert not (tmp_path / "o" / ARCHIVE_NAME).exists()
