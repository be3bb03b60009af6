"""The TFDS dataset ``bigearth_sr``: the real ``tfds build`` CLI (both forms, tfrecord and
array_record), ``tfds.load`` / ``tfds.data_source`` round trips against the HDF5 archive,
Beam generation, and the real BigEarthNet fixtures."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bigearth import nomenclature as nom
from bigearth.record import BANDS_SUPER, META_FIELDS, RGB
from dataset_builder import archive, inputs, upsample
from dataset_builder.build import ARCHIVE_NAME

from .conftest import ROOT, fixtures_dir

tfds = pytest.importorskip("tensorflow_datasets")
RGB_INDEX = [BANDS_SUPER.index(b) for b in RGB]


def run_tfds(args, cwd, tmp_path, quiet_tf=True, rc=0):
    exe = Path(sys.executable).with_name("tfds")
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}, "BIGEARTH_SR_WORKERS": "2"}
    if quiet_tf:
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    r = subprocess.run([str(exe), "build", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == rc, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def by_name(path) -> dict:
    return {r.name: r for r in archive.iter_records(path)}


def check_example(ex, r, variant: str) -> None:
    """One TFDS example (numpy) equals the archive's record."""
    name = ex["filename"].decode() if isinstance(ex["filename"], bytes) else ex["filename"]
    assert name == r.name
    if variant == "super":
        np.testing.assert_array_equal(ex["data_super"], r.data_super)
        assert ex["data_super"].dtype == np.uint16
    elif variant == "rgb":
        np.testing.assert_array_equal(ex["data_rgb"], r.data_super[RGB_INDEX])
    else:
        for k in ("10m", "20m", "60m"):
            np.testing.assert_array_equal(ex[f"data_{k}"], getattr(r, f"data_{k}"))
    assert sorted(int(i) for i in ex["labels"]) == np.flatnonzero(r.classes).tolist()
    assert sorted(int(i) for i in ex["labels_19"]) == np.flatnonzero(r.classes_19).tolist()
    for key, want in (("labels_multi_hot", r.classes), ("labels_19_multi_hot", r.classes_19)):
        assert ex[key].dtype == np.uint8 and ex[key].tolist() == (np.asarray(want) > 0).astype(int).tolist()
    m = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in ex["metadata"].items()}
    assert set(m) == {k for k in META_FIELDS if k not in ("name", "split")}  # from the record's definition
    assert (m["product"], m["tile"], m["date"], m["crs"]) == (r.product, r.tile, r.date, r.crs)
    assert (int(m["x"]), int(m["y"])) == (r.x, r.y) and list(m["bounds"]) == list(r.bounds)


@pytest.fixture(scope="module")
def reference(built):
    out, manifest, _ = built
    return by_name(out / ARCHIVE_NAME), manifest


def test_configs_span_variants_and_upsampling_methods():
    from dataset_builder.bigearth_sr import Builder
    names = {c.name for c in Builder.BUILDER_CONFIGS}
    others = [u for u in upsample.available() if u != "dsen2"]
    assert names == ({f"{v}_{u}" for u in others for v in ("super", "rgb")} | {"super", "rgb", "native"}
                     | {"super_paper", "rgb_paper"})
    paper = Builder(config="super_paper", data_dir="/nonexistent").builder_config
    assert (paper.upsampling, paper.sr_model) == ("dsen2", "paper")
    # the default is DSen2, the method the dataset is named for
    default = Builder(data_dir="/nonexistent").builder_config
    assert (default.name, default.variant, default.upsampling) == ("super", "super", "dsen2")
    info = Builder(config="super_bilinear", data_dir="/nonexistent").info
    assert info.features["labels"].feature.names == list(nom.CLASS_NAMES)
    assert info.features["labels_19"].feature.names == list(nom.CLASS_NAMES_19)
    assert info.features["data_super"].shape == (12, 120, 120) and info.features["data_super"].dtype == np.uint16


def test_cli_imports_form_tfrecord_then_tfds_load(synth_dir, reference, tmp_path):
    """...with the build's progress shown as one bar of patches (rate and time left), and TensorFlow's
    start-up log lines, which every worker process would repeat, left out (TF_CPP_MIN_LOG_LEVEL
    unset, as a user runs it); as_supervised gives multi-hot labels that batch."""
    recs, manifest = reference
    data_dir = tmp_path / "data"
    r = run_tfds(["bigearth_sr/super_bilinear", "--imports", "dataset_builder.bigearth_sr",
                  f"--manual_dir={synth_dir}", f"--data_dir={data_dir}", "--file_format=tfrecord"], tmp_path, tmp_path,
                 quiet_tf=False)
    bars = set(re.findall(r"tiles[^:]*: 100%\|[^|]*\| ([\d.]+)/([\d.]+) \[[\d:]+<[\d:]+", r.stderr))
    assert bars == {("48.0", "48.0")}, r.stderr[-3000:]  # one bar: 3 products of 16 patches, with the time left
    # TensorFlow's start-up lines ("I0000 <time> <pid> port.cc:...] oneDNN ...") from one process, tfds's own
    # (it imports TensorFlow before the builder runs), never again from each worker
    pids = set(re.findall(r"^[IWE]\d{4} [\d:.]+ +(\d+) ", r.stderr, re.M))
    assert len(pids) <= 1 and r.stderr.count("apitools not found") <= 1, r.stderr[-3000:]
    from dataset_builder.bigearth_sr.bigearth_sr_dataset_builder import Builder
    version = str(Builder.VERSION)
    assert list((data_dir / "bigearth_sr" / "super_bilinear" / version).glob("*.tfrecord*"))
    seen = []
    for split, n in manifest["patches_per_split"].items():
        ds = tfds.load("bigearth_sr/super_bilinear", data_dir=str(data_dir), split=split)
        exs = list(tfds.as_numpy(ds))
        assert len(exs) == n
        for ex in exs:
            check_example(ex, recs[ex["filename"].decode()], "super")
            seen.append(ex["filename"].decode())
    assert sorted(seen) == sorted(recs)
    train = manifest["patches_per_split"]["train"]
    ds = tfds.load("bigearth_sr/super_bilinear", data_dir=str(data_dir), split="train", as_supervised=True)
    x, y = next(iter(tfds.as_numpy(ds.batch(train))))  # the recipe docs/tfds.md gives, in one batch
    assert x.shape == (train, 12, 120, 120) and y.shape == (train, 43) and y.dtype == np.uint8


def test_cli_folder_form_array_record_then_data_source(synth_dir, reference, tmp_path):
    recs, manifest = reference
    data_dir = tmp_path / "data"
    # from dataset_builder/, the dataset is found as the folder bigearth_sr/ (TFDS's folder convention)
    for config in ("native", "rgb_bilinear"):
        run_tfds(["bigearth_sr", "--config", config, f"--manual_dir={synth_dir}", f"--data_dir={data_dir}",
                  "--file_format=array_record"], ROOT / "dataset_builder", tmp_path)
    # the products were built once; the second configuration resumed that build
    assert (data_dir / "downloads" / "bigearth_sr_build" / "bilinear" / ARCHIVE_NAME).exists()
    for config, variant in (("native", "native"), ("rgb_bilinear", "rgb")):
        src = tfds.data_source(f"bigearth_sr/{config}", data_dir=str(data_dir))
        assert {s: len(src[s]) for s in src} == manifest["patches_per_split"]
        names = []
        for split in src:
            for i in range(len(src[split])):
                ex = src[split][i]
                check_example(ex, recs[ex["filename"].decode()], variant)
                names.append(ex["filename"])
        assert len(names) == len(set(names)) == len(recs)


def test_beam_generation_equals_the_generator(synth_dir, reference, tmp_path):
    pytest.importorskip("apache_beam")
    from apache_beam.options.pipeline_options import PipelineOptions

    from dataset_builder.bigearth_sr import Builder
    recs, manifest = reference
    b = Builder(config="native", data_dir=str(tmp_path / "beam"), file_format="array_record")
    opts = PipelineOptions(["--direct_num_workers=1", "--direct_running_mode=in_memory"])
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(synth_dir), beam_options=opts))
    src = b.as_data_source()
    assert {s: len(src[s]) for s in src} == manifest["patches_per_split"]
    for split in src:
        for i in range(len(src[split])):
            ex = src[split][i]
            check_example(ex, recs[ex["filename"].decode()], "native")


def test_beam_on_this_machine_refuses_what_its_memory_cannot_hold(built, tmp_path, monkeypatch):
    """The DirectRunner holds every example in memory: a build it cannot hold is refused before
    the pipeline starts, naming the generator and distributed runners; nothing is written."""
    pytest.importorskip("apache_beam")
    from apache_beam.options.pipeline_options import PipelineOptions

    from bigearth import distinfo
    from dataset_builder.bigearth_sr import Builder
    from dataset_builder.bigearth_sr.bigearth_sr_dataset_builder import direct_runner_bytes, example_bytes
    out, manifest, _ = built
    manual = tmp_path / "manual"
    manual.mkdir()
    os.link(out / ARCHIVE_NAME, manual / ARCHIVE_NAME)
    need = direct_runner_bytes(manifest["patches"], "super")
    assert example_bytes("super") == 12 * 120 * 120 * 2 and example_bytes("rgb") == 3 * 120 * 120 * 2
    monkeypatch.setattr(distinfo, "available_memory", lambda: need - 1)
    b = Builder(config="super_bilinear", data_dir=str(tmp_path / "beam"))  # the archive's upsampling
    opts = PipelineOptions(["--direct_num_workers=1", "--direct_running_mode=in_memory"])
    with pytest.raises(MemoryError, match=r"DirectRunner need about .* leave out --beam_pipeline_options"):
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual), beam_options=opts))
    assert not list((tmp_path / "beam").rglob("*.tfrecord*"))
    # a runner elsewhere (here named, not run) is not this machine's memory: not refused for it
    from dataset_builder.bigearth_sr.bigearth_sr_dataset_builder import _is_direct_runner
    assert not _is_direct_runner(tfds.download.DownloadConfig(beam_options=PipelineOptions(["--runner=DataflowRunner"])))
    assert _is_direct_runner(tfds.download.DownloadConfig(beam_options=opts))


def test_a_build_short_of_examples_is_refused_and_removed(built, tmp_path, monkeypatch):
    """Beam's DirectRunner was seen to finish having lost examples: every split's count is
    checked against the archive's, and a short build is removed before anyone reads it (here the
    generator is made to lose one example)."""
    from dataset_builder.bigearth_sr import Builder
    from dataset_builder.bigearth_sr import bigearth_sr_dataset_builder as mod
    out, manifest, _ = built
    manual = tmp_path / "manual"
    manual.mkdir()
    os.link(out / ARCHIVE_NAME, manual / ARCHIVE_NAME)
    real = mod.examples
    monkeypatch.setattr(mod, "examples", lambda rows, path, variant: real(list(rows)[1:], path, variant))
    b = Builder(config="rgb_bilinear", data_dir=str(tmp_path / "tfds"))  # the archive's upsampling
    with pytest.raises(RuntimeError, match=r"wrote fewer examples than the archive holds \(.*: \d+ of \d+"):
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    assert not Path(b.data_dir).exists()


def test_an_existing_archive_as_manual_dir(built, reference, products, tmp_path):
    out, manifest, _ = built
    recs, _ = reference
    manual = tmp_path / "manual"
    manual.mkdir()
    os.link(out / ARCHIVE_NAME, manual / ARCHIVE_NAME)
    from dataset_builder.bigearth_sr import Builder
    b = Builder(config="super_bilinear", data_dir=str(tmp_path / "d"), file_format="array_record")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    src = b.as_data_source()
    assert {s: len(src[s]) for s in src} == manifest["patches_per_split"]
    ex = src["train"][0]
    check_example(ex, recs[ex["filename"].decode()], "super")
    with pytest.raises(ValueError, match="built with --upsampling bilinear, this configuration needs dsen2"):
        inputs.archive_for(manual, tmp_path / "w", "dsen2")
    with pytest.raises(ValueError, match="this configuration needs dsen2 --sr-model paper"):
        inputs.archive_for(manual, tmp_path / "w", "dsen2", sr_model="paper")
    with pytest.raises(FileNotFoundError, match="holds neither"):
        inputs.describe(tmp_path / "d")
    # issue 34: an archive with products beside it is refused, naming both (not read, the rest ignored)
    from bigearth.errors import InputError
    os.symlink(products[0], manual / products[0].name)
    with pytest.raises(InputError, match=rf"manual: holds {ARCHIVE_NAME} and 1 Level-2A product\(s\) "
                                         rf"\({re.escape(products[0].name)}\) beside it: which to read is not clear"):
        Builder(config="super_bilinear", data_dir=str(tmp_path / "d2")).download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


def test_an_archive_whose_pixels_were_edited_is_refused_naming_the_patch(built, tmp_path):
    """A data_super row changed with h5py (a fresh Fletcher-32, no manifest beside it): the TFDS
    build names the archive and the patch instead of writing the edited pixels (issue 33)."""
    import shutil

    import h5py
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copyfile(built[0] / ARCHIVE_NAME, manual / ARCHIVE_NAME)
    with h5py.File(manual / ARCHIVE_NAME, "r+") as f:
        row = f["data_super"][2]
        row[5] += 1
        f["data_super"][2] = row
        name = f["name"].asstr()[2]
    exe = Path(sys.executable).with_name("tfds")
    r = subprocess.run([str(exe), "build", "bigearth_sr/super_bilinear", "--imports", "dataset_builder.bigearth_sr",
                        f"--manual_dir={manual}", f"--data_dir={tmp_path / 'data'}"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == (f"error: {manual / ARCHIVE_NAME}: patch {name}: its data_super differs "
                                                 f"from its digest (changed after its build; rebuild it)")
    assert not list((tmp_path / "data").rglob("*.array_record*")) and not list((tmp_path / "data").rglob("*.tfrecord*"))


def test_an_archive_whose_labels_were_rewritten_is_refused_as_shards_refuses_it(built, tmp_path):
    """Issue 34's first case: every label set to class 0 with h5py, no manifest beside it. shards and
    info --verify refused it for its digests; tfds build converted it. Now the same line, exit 1."""
    import shutil

    import h5py
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copyfile(built[0] / ARCHIVE_NAME, manual / ARCHIVE_NAME)
    with h5py.File(manual / ARCHIVE_NAME, "r+") as f:
        c = np.zeros_like(f["classes"][:])
        c[:, 0] = 1
        f["classes"][:] = c
    exe = Path(sys.executable).with_name("tfds")
    r = subprocess.run([str(exe), "build", "bigearth_sr/super_bilinear", "--imports", "dataset_builder.bigearth_sr",
                        f"--manual_dir={manual}", f"--data_dir={tmp_path / 'data'}"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    from bigearth_cli.cli import main
    line = (f"error: {manual / ARCHIVE_NAME}: dataset classes differs from what the archive's digests record: it was "
            f"changed after its build (rebuild it)")
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.strip().splitlines()[-1] == line, r.stderr[-3000:]
    assert not (tmp_path / "data" / "bigearth_sr").exists() or not list((tmp_path / "data").rglob("*.tfrecord*"))
    assert main(["shards", str(manual / ARCHIVE_NAME), "--out", str(tmp_path / "s"), "--no-progress"]) == 1


def test_real_bigearthnet_patches_flow_through_tfds(tmp_path):
    src = fixtures_dir("bigearthnet-v1")
    lists = fixtures_dir("bigearthnet-lists")
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copytree(src, manual / "BigEarthNet-v1.0")
    shutil.copytree(lists, manual / "lists")
    from dataset_builder.bigearth_sr import Builder
    from dataset_builder.build import BuildConfig, build
    ref = tmp_path / "ref"
    manifest = build([src], BuildConfig(out_dir=str(ref), official_lists=str(lists), progress=False))
    recs = by_name(ref / ARCHIVE_NAME)
    b = Builder(config="native", data_dir=str(tmp_path / "d"), file_format="array_record")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    ds = b.as_data_source()
    assert {s: len(ds[s]) for s in ds} == manifest["patches_per_split"]
    for split in ds:
        for i in range(len(ds[split])):
            ex = ds[split][i]
            r = recs[ex["filename"].decode()]
            assert r.split == split
            check_example(ex, r, "native")


def test_every_config_from_an_archive_skips_the_others_in_one_line(built, tmp_path):
    """`tfds build bigearth_sr` (no config) on an archive: the configs of its upsampling and native
    are built; each other config is one line naming it and why, with no folder and no traceback,
    and the exit code is 3, with a line counting them (issue 34). Asked for by name, the configs
    the archive serves exit 0, and one it cannot serve is an error (exit 1)."""
    out, manifest, _ = built
    manual = tmp_path / "manual"
    manual.mkdir()
    os.link(out / ARCHIVE_NAME, manual / ARCHIVE_NAME)
    shutil.copy(out / "manifest.json", manual / "manifest.json")
    data_dir = tmp_path / "data"
    r = run_tfds(["bigearth_sr", "--imports", "dataset_builder.bigearth_sr", f"--manual_dir={manual}",
                  f"--data_dir={data_dir}"], tmp_path, tmp_path, rc=3)
    assert r.stderr.strip().splitlines()[-1].startswith("6 of 9 configs skipped (the source cannot give them, listed "
                                                        "above): exit code 3")
    skipped = [line for line in r.stdout.splitlines() if line.startswith("skipped ")]
    assert sorted(line.split(":")[0] for line in skipped) == sorted(
        f"skipped bigearth_sr/{c}" for c in ("super", "rgb", "super_paper", "rgb_paper", "super_bicubic", "rgb_bicubic"))
    assert all("was built with --upsampling bilinear and this config needs" in line for line in skipped)
    assert "Traceback" not in r.stdout + r.stderr
    made = sorted(p.name for p in (data_dir / "bigearth_sr").iterdir() if not p.name.startswith("."))  # TFDS's .config/
    assert made == ["native", "rgb_bilinear", "super_bilinear"]
    served = ["bigearth_sr/super_bilinear", "bigearth_sr/native", "--imports", "dataset_builder.bigearth_sr",
              f"--manual_dir={manual}", f"--data_dir={data_dir}"]
    run_tfds(served, tmp_path, tmp_path)  # exactly the configs it serves: 0
    r = run_tfds(["bigearth_sr/super_bicubic", *served[2:]], tmp_path, tmp_path, rc=1)
    assert "error: bigearth_sr/super_bicubic: " in r.stderr and "Traceback" not in r.stderr
    from dataset_builder.bigearth_sr import Builder
    b = Builder(config="super_bicubic", data_dir=str(data_dir))
    with pytest.raises(ValueError, match="needs bicubic"):
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


def test_a_rerun_over_a_changed_source_never_reuses_the_old_dataset(products, synth_dir, tmp_path):
    """Issue 34: one of the three products removed from --manual_dir, the rerun of tfds build is
    refused (exit 1, one line naming the removed tile and --overwrite), never "Reusing"; an
    unchanged source is reused; --overwrite rebuilds from what the folder holds now."""
    import shutil

    from dataset_builder.bigearth_sr import Builder
    manual = tmp_path / "manual"
    for p in [*products, *synth_dir.glob("CLC_*.tif")]:
        (shutil.copytree if p.is_dir() else shutil.copy)(p, manual / p.name)
    exe = Path(sys.executable).with_name("tfds")
    cmd = [str(exe), "build", "bigearth_sr/super_bilinear", "--imports", "dataset_builder.bigearth_sr",
           f"--manual_dir={manual}", f"--data_dir={tmp_path / 'data'}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "BIGEARTH_SR_WORKERS": "1"}

    def tfds_build(*extra):
        return subprocess.run([*cmd, *extra], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)

    assert tfds_build().returncode == 0
    r = tfds_build()
    assert r.returncode == 0, r.stderr[-2000:]  # the same source: reused
    first = Builder(config="super_bilinear", data_dir=str(tmp_path / "data")).info.splits.total_num_examples
    shutil.rmtree(manual / products[1].name)
    tile = products[1].name.split("_")[5]
    r = tfds_build()
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert r.returncode == 1 and len(err) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "holds a dataset built from another source than --manual_dir" in err[0] and "1 tile(s) removed" in err[0]
    assert tile in err[0] and "rerun with --overwrite" in err[0] and "Reusing" not in r.stdout + r.stderr
    r = tfds_build("--overwrite")
    assert r.returncode == 0, r.stderr[-3000:]
    now = Builder(config="super_bilinear", data_dir=str(tmp_path / "data")).info.splits.total_num_examples
    with __import__("h5py").File(tmp_path / "data" / "downloads" / "bigearth_sr_build" / "bilinear" / ARCHIVE_NAME) as f:
        assert now == f["name"].shape[0] < first
