"""dataset_builder/build.py: the manifest, splits, workers and merge modes, kill and resume, `info`."""
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from bigearth import nomenclature as nom
from bigearth.record import BANDS_SUPER
from dataset_builder import archive
from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build

from .conftest import assert_same_archive


def test_manifest_stats_and_checksums(built):
    out, manifest, _ = built
    import hashlib
    sha = hashlib.sha256((Path(out) / ARCHIVE_NAME).read_bytes()).hexdigest()
    assert manifest["outputs"][ARCHIVE_NAME] == sha
    with h5py.File(Path(out) / ARCHIVE_NAME, "r") as f:
        sup = f["data_super"][:].astype(np.float64)
        assert f["data_super"].chunks == (1, 12, 120, 120)
        assert list(f["data_super"].attrs["bands"]) == list(BANDS_SUPER)
        assert list(f["classes"].attrs["class_names"]) == list(nom.CLASS_NAMES)
        assert "BOA_ADD_OFFSET" in f.attrs["value_convention"]
        assert json.loads(f.attrs["build_config"])["upsampling"] == "bilinear"
        train = f["split"].asstr()[:] == "train"
    # normalisation statistics come from the training patches only (tests/test_stats.py checks more)
    st = manifest["band_stats"]["data_super"]
    assert manifest["band_stats"]["fitted_on"] == "train" and train.any() and not train.all()
    np.testing.assert_allclose(st["mean"], sup[train].mean(axis=(0, 2, 3)), rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(st["std"], sup[train].std(axis=(0, 2, 3)), rtol=1e-5, atol=1e-3)
    assert manifest["patches"] == sum(manifest["patches_per_split"].values())
    assert manifest["patches"] + manifest["dropped_total"] == 3 * 16


def test_splits_are_tile_disjoint(built):
    recs = list(archive.iter_records(built[0] / ARCHIVE_NAME))
    split_of_tile = {}
    for r in recs:
        assert split_of_tile.setdefault(r.tile, r.split) == r.split


def test_one_and_two_workers_and_virtual_merge_give_the_same_archive(built, products, synth_dir, tmp_path):
    ref = Path(built[0]) / ARCHIVE_NAME
    clc = built[2].clc
    for workers, merge in ((2, "copy"), (1, "virtual")):
        out = tmp_path / f"w{workers}{merge}"
        manifest = build(products, BuildConfig(out_dir=str(out), upsampling="bilinear", clc=clc, merge=merge, progress=False), workers=workers)
        assert not manifest["tiles_failed"]
        assert_same_archive(ref, out / ARCHIVE_NAME)


@pytest.mark.parametrize("kill_after", ["first_part", "mid_tile"])
def test_kill_and_resume_equals_an_uninterrupted_build(built, products, tmp_path, kill_after):
    out = tmp_path / "resumed"
    clc = built[2].clc
    cmd = [sys.executable, "-m", "bigearth_cli.cli", "build", *map(str, products), "--out", str(out),
           "--no-progress", "--upsampling", "bilinear", *[a for c in clc for a in ("--clc", c)]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out / "parts"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if kill_after == "first_part" and len(list(parts.glob("*.json"))) >= 1:
            break
        if kill_after == "mid_tile" and list(parts.glob(".*.h5.*.tmp")):
            break
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no cleanup runs
    proc.wait()
    assert not (out / ARCHIVE_NAME).exists(), "the build finished before it could be killed"
    rc = subprocess.run(cmd, capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    assert_same_archive(Path(built[0]) / ARCHIVE_NAME, out / ARCHIVE_NAME)
    assert not list(out.rglob("*.tmp"))  # the killed run's temporary too: the rerun cleared it


def test_cli_info_reports_the_archive(built, capsys):
    from bigearth_cli.cli import main
    out, manifest, _ = built
    assert main(["info", str(Path(out) / ARCHIVE_NAME)]) == 0
    text = capsys.readouterr().out
    assert f"{manifest['patches']} patches; merge=copy compression=blosc-lz4" in text
    assert str(manifest["patches_per_split"]) in text
    assert "data_super   uint16" in text and "chunks=(1, 12, 120, 120)" in text
    assert "super-resolution: bilinear" in text and "labels: 3 CORINE raster(s)" in text
    assert max(len(line) for line in text.splitlines()) < 1000  # the provenance is behind --json, not one long line
    assert main(["info", str(Path(out) / ARCHIVE_NAME), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    with h5py.File(Path(out) / ARCHIVE_NAME) as f:
        assert doc["build_config"] == json.loads(f.attrs["build_config"])
    assert doc["patches"] == manifest["patches"] and doc["per_split"] == manifest["patches_per_split"]


def test_a_rebuild_keeps_the_archive_unless_a_part_changed(products, synth_dir, tmp_path):
    """Nothing changed: the archive file is kept as it is (what was made from it stays valid);
    one part changed: it is merged again."""
    import os
    cfg = BuildConfig(out_dir=str(tmp_path / "b"), upsampling="bilinear", clc=sorted(str(p) for p in synth_dir.glob("CLC_*.tif")),
                      progress=False)
    build(products[:2], cfg)
    path = tmp_path / "b" / ARCHIVE_NAME
    first = (path.stat().st_ino, path.stat().st_mtime_ns, h5py.File(path, "r")["name"].shape)
    again = build(products[:2], cfg)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == first[:2]
    import dataclasses
    build(products[:2], dataclasses.replace(cfg, progress=True))  # bars shape nothing: kept too
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == first[:2]
    assert again["outputs"][ARCHIVE_NAME] == hashlib.sha256(path.read_bytes()).hexdigest()
    os.utime(path, ns=(0, 0))
    third = build(products[:1], cfg)  # another set of parts: merged anew
    assert path.stat().st_mtime_ns != 0 and third["patches"] < again["patches"]
    with h5py.File(path, "r") as f:
        assert f["name"].shape[0] == third["patches"]


def test_products_without_a_labels_source_fail_before_any_work(products, tmp_path, capsys):
    from bigearth_cli.cli import main
    out = tmp_path / "out"
    assert main(["build", *map(str, products), "--out", str(out), "--upsampling", "bilinear", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --clc: 3 Level-2A product(s) given") and "--labels-json" in err[0]
    assert not (out / "parts").exists() and not (out / "manifest.json").exists()


def test_each_failed_input_is_one_full_line(products, synth_dir, tmp_path, capsys, monkeypatch):
    """A product whose folder is not a product, beside a good one: the good one is built, the bad
    one is named in full on its own line (never cut to the table's width), exit 1."""
    from bigearth_cli.cli import main
    monkeypatch.setenv("COLUMNS", "40")
    bad = tmp_path / ("S2B_MSIL2A_20990101T000000_N0500_R001_T31UFU_" + "X" * 60 + ".SAFE")
    bad.mkdir()
    out = tmp_path / "out"
    rc = main(["build", str(products[0]), str(bad), "--out", str(out), "--upsampling", "bilinear", "--no-progress",
               "--clc", str(synth_dir)])
    assert rc == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    manifest = json.loads((out / "manifest.json").read_text())
    (key, reason), = manifest["tiles_failed"].items()
    assert len(errors) == 1 and str(bad) in errors[0] and errors[0].endswith(reason.split(": ")[-1])
    assert manifest["patches"] > 0 and key in captured.out  # the table names it whole too
    assert "total: 1 built, 1 failed" in captured.out
    assert not (out / ".lock").exists()


def test_v1_without_official_lists_says_nothing_is_screened(built, tmp_path, capsys):
    from bigearth_cli.cli import main

    from .conftest import write_ben
    out, _, _ = built
    recs = list(archive.iter_records(Path(out) / ARCHIVE_NAME))[:3]
    write_ben(tmp_path / "ben", recs, recs[0].product + ".SAFE")
    assert main(["build", str(tmp_path / "ben"), "--out", str(tmp_path / "o"), "--upsampling", "bilinear",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["patches_per_split"] == {"none": 3}
    (note,) = manifest["notes"]
    assert "without --official-lists: nothing is screened" in note and "split 'none'" in note
    assert f"note: {note}" in captured.err


@pytest.mark.parametrize("workers,how", [("1", "SIGINT"), ("2", "SIGINT"), ("1", "SIGTERM"), ("2", "SIGTERM"),
                                         ("2", "SIGHUP")])
def test_a_stop_is_one_line_and_the_rerun_resumes(built, products, tmp_path, workers, how):
    """Ctrl-C, SIGTERM (a cluster's stop) or SIGHUP mid-build (in this process, or with worker
    processes, the whole process group signalled as SLURM does): the shell's exit code for it, one
    line saying what is kept, no traceback, no lock or temporary left; the rerun ends with the
    archive an uninterrupted build writes."""
    import signal
    sig = getattr(signal, how)
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "bigearth_cli.cli", "build", *map(str, products), "--out", str(out), "--no-progress",
           "--upsampling", "bilinear", "--workers", workers, *[a for c in built[2].clc for a in ("--clc", c)]]
    # as from a shell, Ctrl-C acts: a child inherits an ignored SIGINT, and a test process seen in the
    # full suite had one (the build then ran to its end, exit 0)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL), os.setpgrp()))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list((out / "parts").glob(".*.h5.*.tmp")):
        time.sleep(0.01)
    os.killpg(proc.pid, sig)  # the build and its workers, as a terminal's Ctrl-C or scancel reach them
    err = proc.communicate(timeout=120)[1]
    code, said = (130, "interrupted") if sig == signal.SIGINT else (128 + sig, f"stopped by {how}")
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"{said}; rerun the same command to resume (finished tiles are kept in the output's parts/ and not "
        "built again)")
    left = [p.name for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == ".lock"]
    assert left == [], left
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    assert_same_archive(Path(built[0]) / ARCHIVE_NAME, out / ARCHIVE_NAME)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == ".lock"]


def test_a_folder_of_products_and_zips_is_taken_as_given(built, products, synth_dir, tmp_path, capsys):
    """Issue 35: `build DIR` builds the products DIR holds (.SAFE folders and .zip), as tfds build's
    manual_dir takes them, says how many it found, and labels them from the CORINE rasters kept in
    DIR's clc/ when no labels source is given."""
    import shutil
    import zipfile

    from bigearth_cli.cli import main
    folder = tmp_path / "products"
    (folder / "clc").mkdir(parents=True)
    shutil.copytree(products[0], folder / products[0].name)
    with zipfile.ZipFile(folder / (products[1].name.removesuffix(".SAFE") + ".zip"), "w") as z:
        for f in sorted(products[1].rglob("*")):
            z.write(f, f"{products[1].name}/{f.relative_to(products[1])}")
    for c in synth_dir.glob("CLC_*.tif"):
        shutil.copy(c, folder / "clc" / c.name)
    (folder / "notes.txt").write_text("not a product")
    out = tmp_path / "out"
    assert main(["build", str(folder), "--out", str(out), "--upsampling", "bilinear", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert f"{folder}: 2 Level-2A product(s) found (1 .SAFE folder(s), 1 .zip), labelled from the 3 CORINE raster(s)" \
        in said
    with h5py.File(out / ARCHIVE_NAME, "r") as f, h5py.File(built[0] / ARCHIVE_NAME, "r") as ref:
        got = dict(zip(f["name"].asstr()[:], f["data_super"][:]))
        want = {n: d for n, d, p in zip(ref["name"].asstr()[:], ref["data_super"][:], ref["product"].asstr()[:])
                if p in {products[0].name.removesuffix(".SAFE"), products[1].name.removesuffix(".SAFE")}}
    assert sorted(got) == sorted(want) and all(np.array_equal(got[n], want[n]) for n in want)


def test_a_build_that_kept_nothing_writes_no_archive_and_says_so(products, synth_dir, tmp_path, capsys):
    """Every patch screened out: no archive and no manifest.json, the manifest kept as
    manifest.failed.json, one closing line saying nothing was built, exit 1; a later build that
    keeps patches writes the archive and removes the failure record."""
    from bigearth_cli.cli import main
    from dataset_builder.archive import FAILED_MANIFEST_NAME
    from dataset_builder.synth import SynthConfig, write_product
    cloudy = write_product(SynthConfig(tile="T33UUP", date="20170716T101031", tile_size_m=2400, seed=5, cloud_cover=1.0),
                           tmp_path / "in")
    out = tmp_path / "out"
    args = ["--out", str(out), "--upsampling", "bilinear", "--no-progress", "--clc", str(synth_dir)]
    assert main(["build", str(cloudy), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    record = json.loads((out / FAILED_MANIFEST_NAME).read_text())
    assert err[-1].startswith("nothing was built: the 1 input(s) read kept no patch (dropped: ") \
        and err[-1].endswith(f"no archive was written, and {out / FAILED_MANIFEST_NAME} records why"), err
    assert record["patches"] == 0 and sum(record["dropped"].values()) == 4
    assert not (out / ARCHIVE_NAME).exists() and not (out / "manifest.json").exists()
    assert main(["build", str(products[0]), *args]) == 0
    assert (out / ARCHIVE_NAME).exists() and (out / "manifest.json").exists()
    assert not (out / FAILED_MANIFEST_NAME).exists()


def test_info_json_verify_keeps_stdout_one_json_document(built, tmp_path, capsys):
    """Issue 34: `info --json --verify` puts the verification inside the JSON (stdout parses), and a
    pixel edited with h5py is a problem there, exit 1."""
    import shutil

    from bigearth_cli.cli import main
    out, manifest, _ = built
    assert main(["info", str(Path(out) / ARCHIVE_NAME), "--json", "--verify", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verify"] == {"patches": manifest["patches"], "checksummed": True, "unchecked": [], "problems": [],
                             "manifest_checked": True}
    arch = tmp_path / ARCHIVE_NAME
    shutil.copyfile(Path(out) / ARCHIVE_NAME, arch)
    with h5py.File(arch, "r+") as f:
        row = f["data_super"][1]
        row[0, 0, 0] += 1
        f["data_super"][1] = row
        name = f["name"].asstr()[1]
    assert main(["info", str(arch), "--json", "--verify", "--no-progress"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verify"]["manifest_checked"] is False and len(doc["verify"]["problems"]) == 1
    assert doc["verify"]["problems"][0].startswith(f"patch {name}: its data_super differs from its digest")
