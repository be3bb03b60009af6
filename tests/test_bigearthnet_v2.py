"""dataset_builder/bigearthnet_v2.py: BigEarthNet v2 (reBEN) as input, on a v2-layout fixture made
from the real v1 patches: values, both label sets, names, splits and screening against the
files themselves; bad inputs named while the other patches are kept."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio

from bigearth import nomenclature as nom
from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M
from dataset_builder import archive
from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build

from .conftest import fixtures_dir, make_v2


@pytest.fixture
def v2(tmp_path):
    src = fixtures_dir("bigearthnet-v1")
    root = tmp_path / "BigEarthNet"
    made = make_v2(src, root)
    return root, made


def _build(root, out, **kw):
    return build([root], BuildConfig(out_dir=str(out), progress=False, **kw))


def test_v2_patches_equal_their_files_and_v1(v2, tmp_path):
    root, made = v2
    m = _build(root, tmp_path / "o")
    assert not m["tiles_failed"] and m["patches"] == len(made) == 4
    assert m["dropped"] == {"snow_list": 1, "cloud_list": 0, "no_labels": 0}  # the copy listed as snowy
    assert m["labels_43_vs_19"] == {"patches": 4, "disagree": 0, "by_class_19": {}}
    rows = {r["patch_id"]: r for r in pq.read_table(root / "metadata.parquet").to_pylist()}
    recs = {r.name: r for r in archive.iter_records(tmp_path / "o" / ARCHIVE_NAME)}
    assert set(recs) == set(made)
    for pid, v1 in made.items():
        r, row = recs[pid], rows[pid]
        for key, bands in (("data_10m", BANDS_10M), ("data_20m", BANDS_20M), ("data_60m", BANDS_60M)):
            for k, band in enumerate(bands):  # v2 values are stored unchanged, as v1's are
                with rasterio.open(v1 / f"{v1.name}_{band}.tif") as ds:
                    np.testing.assert_array_equal(getattr(r, key)[k], ds.read(1), err_msg=f"{pid} {band}")
        v1_labels = json.loads((v1 / f"{v1.name}_labels_metadata.json").read_text())["labels"]
        assert nom.names_of(r.classes) == sorted(v1_labels, key=nom.CLASS_NAMES.index)  # 43 from the map
        assert nom.names_of(r.classes_19, nom.CLASS_NAMES_19) == sorted(row["labels"], key=nom.CLASS_NAMES_19.index)
        assert r.split == row["split"] and (r.v1_name, r.s1_name) == (row["s2v1_name"], row["s1_name"])
        x, y = map(int, pid.split("_")[-2:])
        assert (r.x, r.y) == (x, y) and r.tile == pid.split("_")[5]
        with rasterio.open(v1 / f"{v1.name}_B02.tif") as ds:
            assert r.bounds == (ds.bounds.left, ds.bounds.top, ds.bounds.right, ds.bounds.bottom)


def test_min_label_share_drops_small_classes_and_the_check_counts_them(v2, tmp_path):
    root, made = v2
    m = _build(root, tmp_path / "o", min_label_share=0.01)  # the last label covers one column: 0.83 %
    recs = list(archive.iter_records(tmp_path / "o" / ARCHIVE_NAME))
    multi = [r for r in recs if json.loads((made[r.name] / f"{made[r.name].name}_labels_metadata.json")
                                           .read_text())["labels"][1:]]
    assert multi  # patches with more than one label: their last one is the one-column class
    for r in multi:
        v1_labels = json.loads((made[r.name] / f"{made[r.name].name}_labels_metadata.json").read_text())["labels"]
        assert nom.names_of(r.classes) == sorted(v1_labels[:-1], key=nom.CLASS_NAMES.index)
    differ = sum(bool((nom.to_19(r.classes) != r.classes_19).any()) for r in recs)
    assert m["labels_43_vs_19"]["disagree"] == differ > 0  # counted, not hidden


def test_a_null_s1_name_is_stored_as_empty_and_noted(v2, tmp_path, capsys):
    """Issue 34: a metadata row whose s1_name is null is built (its S2 patch is whole), stored with
    s1_name '', and said: a note on the console and in the manifest, counting such patches."""
    root, made = v2
    victim = sorted(made)[0]
    _rewrite_parquet(root / "metadata.parquet", lambda rows: [
        {**r, "s1_name": None} if r["patch_id"] == victim else r for r in rows])
    m = _build(root, tmp_path / "o")
    assert not m["tiles_failed"] and m["patches"] == len(made)
    recs = {r.name: r for r in archive.iter_records(tmp_path / "o" / ARCHIVE_NAME)}
    assert recs[victim].s1_name == "" and all(recs[n].s1_name for n in made if n != victim)
    note = next(n for n in m["notes"] if "s1_name" in n)
    assert f"metadata.parquet: 1 of {len(made)} patch(es) have no s1_name (e.g. {victim})" in note
    assert note in capsys.readouterr().err


def _rewrite_parquet(path, change):
    rows = pq.read_table(path).to_pylist()
    schema = pq.read_schema(path)
    pq.write_table(pa.Table.from_pylist(change(rows), schema=schema), path)


@pytest.mark.parametrize("fault", ["parquet missing", "listed but not on disk", "on disk but not listed",
                                   "unknown label", "code outside CLC", "band of the wrong size", "split val",
                                   "band shifted 1200 m", "listed twice", "listed twice, same row",
                                   "kept and screened", "labels as strings", "patch_id as numbers", "no labels",
                                   "patch_id empty"])
def test_bad_inputs_are_named_and_the_other_patches_kept(v2, tmp_path, fault):
    root, made = v2
    victim = sorted(made)[0]
    product = "_".join(victim.split("_")[:6])
    expect = 3
    if fault == "parquet missing":
        (root / "metadata.parquet").unlink()
        names, expect = ["metadata.parquet: not found"], 0
    elif fault == "listed but not on disk":
        shutil.rmtree(root / "BigEarthNet-S2" / product / victim)
        names = ["metadata.parquet", victim, "is missing"]
    elif fault == "on disk but not listed":
        _rewrite_parquet(root / "metadata.parquet", lambda rows: [r for r in rows if r["patch_id"] != victim])
        names = [victim, "in neither metadata.parquet"]
    elif fault == "unknown label":
        _rewrite_parquet(root / "metadata.parquet", lambda rows: [
            {**r, "labels": ["Lunar regolith"]} if r["patch_id"] == victim else r for r in rows])
        names = ["metadata.parquet", victim, "Lunar regolith"]
    elif fault == "code outside CLC":
        path = root / "Reference_Maps" / product / victim / f"{victim}_reference_map.tif"
        with rasterio.open(path, "r+") as ds:
            a = ds.read(1)
            a[0, 0] = 777
            ds.write(a, 1)
        names = [f"{victim}_reference_map.tif", "777"]
    elif fault == "band of the wrong size":
        path = root / "BigEarthNet-S2" / product / victim / f"{victim}_B05.tif"
        with rasterio.open(path) as ds:
            profile = {**ds.profile, "width": 61, "height": 61}
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(np.zeros((1, 61, 61), np.uint16))
        names = [f"{victim}_B05.tif", "61 x 61"]
    elif fault == "split val":  # the known pitfall: the value is 'validation'
        _rewrite_parquet(root / "metadata.parquet", lambda rows: [
            {**r, "split": "val"} if r["patch_id"] == victim else r for r in rows])
        names = ["metadata.parquet", victim, "'val'"]
    elif fault == "band shifted 1200 m":  # v1 refuses the same file; B02, the corner's band, is left alone
        path = root / "BigEarthNet-S2" / product / victim / f"{victim}_B11.tif"
        with rasterio.open(path, "r+") as ds:
            t = ds.transform
            ds.transform = rasterio.Affine(t.a, t.b, t.c + 1200, t.d, t.e, t.f)
        names = [f"{victim}_B11.tif", "is not the 20 m grid"]
    elif fault == "listed twice":  # the later row would win: a validation patch moved to test, silently
        def twice(rows):
            row = next(r for r in rows if r["patch_id"] == victim)
            other = "test" if row["split"] != "test" else "validation"
            return rows + [{**row, "split": other}]
        _rewrite_parquet(root / "metadata.parquet", twice)
        names = ["metadata.parquet", victim, "listed 2 times", "which row holds is ambiguous"]
    elif fault == "listed twice, same row":  # identical rows are not ambiguous: built once
        _rewrite_parquet(root / "metadata.parquet", lambda rows: rows + [r for r in rows if r["patch_id"] == victim])
        names, expect = [], 4
    elif fault == "kept and screened":
        row = next(r for r in pq.read_table(root / "metadata.parquet").to_pylist() if r["patch_id"] == victim)
        _rewrite_parquet(root / "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
                         lambda rows: rows + [{**{k: rows[0][k] for k in rows[0]}, **{k: row[k] for k in row if k in rows[0]}}])
        names = ["metadata.parquet", victim, "kept and screened out at once"]
    elif fault == "patch_id empty":  # issue 34: that row fails alone (its folder is then in no table), not the folder
        rows = pq.read_table(root / "metadata.parquet").to_pylist()
        at = next(i for i, r in enumerate(rows) if r["patch_id"] == victim)
        _rewrite_parquet(root / "metadata.parquet", lambda rows: [
            {**r, "patch_id": None} if r["patch_id"] == victim else r for r in rows])
        names = [f"metadata.parquet: row {at}: patch_id is empty; the row is left out", victim,
                 "in neither metadata.parquet"]
    elif fault == "no labels":  # an empty label list: dropped as no_labels, counted, not a failure
        _rewrite_parquet(root / "metadata.parquet", lambda rows: [
            {**r, "labels": []} if r["patch_id"] == victim else r for r in rows])
        names = []
    elif fault in ("labels as strings", "patch_id as numbers"):  # a column of another type: named, not misread
        table = pq.read_table(root / "metadata.parquet")
        col = "labels" if fault == "labels as strings" else "patch_id"
        values = ([";".join(v) for v in table.column(col).to_pylist()] if col == "labels"
                  else list(range(table.num_rows)))
        table = table.set_column(table.column_names.index(col), col, pa.array(values))
        pq.write_table(table, root / "metadata.parquet")
        names = ["metadata.parquet", f"column '{col}' is of type {'string' if col == 'labels' else 'int64'}, expected"]
        expect = 0
    m = _build(root, tmp_path / "o")
    errors = " | ".join(m["tiles_failed"].values())
    for n in names:
        assert n in errors, (n, errors)
    assert m["patches"] == expect
    if expect and names:
        with h5py.File(tmp_path / "o" / ARCHIVE_NAME, "r") as f:
            assert victim not in set(f["name"].asstr()[:])
    if fault == "no labels":
        assert not m["tiles_failed"] and m["dropped"]["no_labels"] == 1 and m["patches"] == 3
        return
    if not names:  # nothing wrong: every patch once, no failure
        assert not m["tiles_failed"]
        with h5py.File(tmp_path / "o" / ARCHIVE_NAME, "r") as f:
            got = list(f["name"].asstr()[:])
        assert len(got) == len(set(got)) == 4 and victim in got


def test_the_v2_folder_is_a_tfds_manual_dir(v2, tmp_path):
    from dataset_builder import inputs
    root, made = v2
    assert inputs.describe(root) == ("bigearthnet", [root])
    path = inputs.archive_for(root, tmp_path / "w", "bilinear")
    with h5py.File(path, "r") as f:
        assert sorted(f["name"].asstr()[:]) == sorted(made)


def test_v1_and_v2_of_one_acquisition_never_become_two_rows_of_a_place(v2, tmp_path):
    """The real v1 patches and the v2 folder made from them, in one build: the v2 patches are the
    same places under other names; they are refused, naming the v1 source, and every place is one row."""
    root, made = v2
    src = fixtures_dir("bigearthnet-v1")
    m = build([src, root], BuildConfig(out_dir=str(tmp_path / "o"), progress=False))
    v2_failed = {k: v for k, v in m["tiles_failed"].items() if "BigEarthNet v2 patches of the acquisition" in v}
    assert v2_failed and all("BigEarthNet v1" in v and "gives too" in v for v in v2_failed.values())
    with h5py.File(tmp_path / "o" / ARCHIVE_NAME, "r") as f:
        places = list(zip(f["tile"].asstr()[:], f["date"].asstr()[:], f["x"][:], f["y"][:]))
    assert len(places) == len(set(places)) and len(places) == m["patches"]


def test_entries_inside_patch_folders_are_accounted_for(v2, tmp_path):
    """A file in a patch folder, a link in a reference-map folder: the patches are built, and
    both are listed under inputs_ignored (the manifest accounts for everything it was given)."""
    root, made = v2
    pid = sorted(made)[0]
    product = pid.rsplit("_", 2)[0]
    note = root / "BigEarthNet-S2" / product / pid / "checked.txt"
    note.write_text("by hand")
    link = root / "Reference_Maps" / product / pid / "latest.tif"
    link.symlink_to(root / "Reference_Maps" / product / pid / f"{pid}_reference_map.tif")
    m = _build(root, tmp_path / "o")
    assert not m["tiles_failed"] and m["patches"] == len(made)
    ignored = m["inputs_ignored"]
    assert ignored[str(note)].startswith("a file in a patch folder") and ignored[str(link)].startswith("a link in a")
