"""benchmarks/scale.py, the data stages as the count grows: its JSON, which a check reads, holds
what it says (here on one tiny product, the build and the verify stages: the full run takes
minutes per size)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py

from .conftest import ROOT


def test_rows_hold_the_measured_stage(tmp_path):
    """...and it runs where the README's first command leaves a user: no pytest, no test module
    (its BigEarthNet v1 inputs are written by dataset_builder.synth_ben)."""
    out = tmp_path / "scale.json"
    block = tmp_path / "no-pytest"
    block.mkdir()
    (block / "pytest.py").write_text("raise ImportError('benchmarks/scale.py must not need pytest')\n")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--patches", "20", "--json", str(out),
                        "--work", str(tmp_path / "work"), "--stages", "build,verify",
                        "--builds", "l2a:bilinear,v1:bilinear", "--downstream", "l2a:bilinear", "--tile-side", "6",
                        "--workers", "1", "--keep"],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(block)})
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    rows = [(x["stage"], x["input"], x["upsampling"]) for x in doc["rows"]]
    assert rows == [("build", "l2a", "bilinear"), ("verify", "l2a", "bilinear"), ("build", "v1", "bilinear")], rows
    build, verify, v1 = doc["rows"]
    assert v1["patches"] == build["patches"]  # the v1 folders are the product build's patches
    assert build["patches"] == verify["patches"] > 0
    for row in doc["rows"]:
        assert set(row) >= {"stage", "input", "upsampling", "patches", "seconds", "peak_rss_mb", "disk_mb"}
        assert row["seconds"] > 0 and row["peak_rss_mb"] > 20  # a Python process at least
    # the build's disk is what it left: the archive, its parts, the manifest (files counted too);
    # verify writes nothing
    assert build["files"] >= 3 and build["disk_mb"] > 0.1 and verify["disk_mb"] == 0 and verify["files"] == 0
    assert "| build | l2a | bilinear |" in r.stdout
    # ``patches`` is what the build kept, read from its archive, not the size asked for
    with h5py.File(tmp_path / "work" / "n20" / "build_l2a_bilinear" / "bigearth_sr.h5", "r") as f:
        assert build["patches"] == f["name"].shape[0]
