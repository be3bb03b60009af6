"""The real BigEarthNet v1 patches in ../shared/fixtures flow through the builder unchanged."""
import json
import shutil

import numpy as np
import pytest
import rasterio

from bigearth import nomenclature as nom
from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, BANDS_SUPER
from dataset_builder import archive
from dataset_builder.bigearthnet_v1 import read_list
from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build
from dataset_builder.tiles import REAL_TILES

from .conftest import fixtures_dir

SNOWY = "S2B_MSIL2A_20180204T94161_57_38"


@pytest.fixture(scope="module")
def ben_build(tmp_path_factory):
    src = fixtures_dir("bigearthnet-v1")
    lists = fixtures_dir("bigearthnet-lists")
    out = tmp_path_factory.mktemp("ben")
    manifest = build([src], BuildConfig(upsampling="bilinear", out_dir=str(out), official_lists=str(lists), progress=False))
    return src, lists, out, manifest


def test_names_and_xy_from_json_coordinates(ben_build):
    src, _, out, _ = ben_build
    recs = list(archive.iter_records(out / ARCHIVE_NAME))
    assert len(recs) == 3
    for r in recs:
        meta = json.loads((src / r.name / f"{r.name}_labels_metadata.json").read_text())
        c = meta["coordinates"]
        tile = meta["tile_source"].split("_")[5]
        _, ulx, uly = REAL_TILES[tile]
        x, y = (c["ulx"] - ulx) / 1200, (uly - c["uly"]) / 1200
        prefix = "_".join(r.name.split("_")[:3])
        assert r.name == f"{prefix}_{int(x)}_{int(y)}" and (r.x, r.y) == (x, y)
        assert r.tile == tile and list(r.bounds) == [c["ulx"], c["uly"], c["lrx"], c["lry"]]
        assert sorted(nom.names_of(r.classes)) == sorted(meta["labels"])


def test_arrays_equal_rasterio_reads(ben_build):
    src, _, out, _ = ben_build
    for r in archive.iter_records(out / ARCHIVE_NAME):
        for key, bands in (("data_10m", BANDS_10M), ("data_20m", BANDS_20M), ("data_60m", BANDS_60M)):
            for i, b in enumerate(bands):
                with rasterio.open(src / r.name / f"{r.name}_{b}.tif") as ds:
                    np.testing.assert_array_equal(getattr(r, key)[i], ds.read(1))
        for b in BANDS_20M:  # super-resolved within the patch: GDAL bilinear on the patch, within rounding
            with rasterio.open(src / r.name / f"{r.name}_{b}.tif") as ds:
                up = ds.read(1, out_shape=(120, 120), resampling=rasterio.enums.Resampling.bilinear, out_dtype="float32")
            assert np.abs(r.data_super[BANDS_SUPER.index(b)] - up).max() <= 1.0


def test_snow_listed_patch_dropped_and_official_splits_kept(ben_build):
    _, lists, out, manifest = ben_build
    assert manifest["dropped"] == {"snow_list": 1, "cloud_list": 0, "no_labels": 0}
    recs = list(archive.iter_records(out / ARCHIVE_NAME))
    assert SNOWY not in {r.name for r in recs}
    for r in recs:
        expected = [s for s in ("train", "validation", "test") if r.name in read_list(str(lists), s)]
        assert [r.split] == expected


def test_official_lists_sizes():
    lists = str(fixtures_dir("bigearthnet-lists"))
    assert len(read_list(lists, "snow")) == 61707 and len(read_list(lists, "cloud")) == 9280
    assert (len(read_list(lists, "train")), len(read_list(lists, "validation")), len(read_list(lists, "test"))) \
        == (269695, 123723, 125866)


def test_missing_band_in_a_patch_folder(tmp_path):
    src = fixtures_dir("bigearthnet-v1")
    dst = tmp_path / "ben"
    shutil.copytree(src, dst)
    victim = dst / "S2A_MSIL2A_20170617T113321_4_55" / "S2A_MSIL2A_20170617T113321_4_55_B8A.tif"
    victim.unlink()
    manifest = build([dst], BuildConfig(upsampling="bilinear", out_dir=str(tmp_path / "o"), progress=False))
    err = next(iter(manifest["tiles_failed"].values()))
    assert victim.name in err and "missing" in err
    assert manifest["tiles_ok"] >= 1


def test_real_patches_flow_through_to_shards_unchanged(ben_build, tmp_path):
    import shards
    _, _, out, manifest = ben_build
    index = shards.write_shards(out / ARCHIVE_NAME, tmp_path, progress=False)
    assert index["samples"] == manifest["patches"] and index["splits"].keys() == manifest["patches_per_split"].keys()
    recs = {r.name: r for r in archive.iter_records(out / ARCHIVE_NAME)}
    seen = []
    for split in index["splits"]:
        for x, y, meta in shards.load(tmp_path, split, variant="native", labels=19, normalize=False, with_meta=True):
            r = recs[meta["name"]]
            assert meta == r.meta() and meta["split"] == split
            for k in ("10m", "20m", "60m"):
                np.testing.assert_array_equal(x[k].numpy(), getattr(r, f"data_{k}"))
            np.testing.assert_array_equal(y.numpy(), r.classes_19)
            seen.append(r.name)
    assert sorted(seen) == sorted(recs)


def test_official_lists_are_read_once_per_build_not_per_tile(built, tmp_path, monkeypatch):
    """Five official lists, several tile_sources: each list is decompressed once (a cache of
    four entries re-read them for every tile)."""
    import bz2

    from dataset_builder import bigearthnet_v1

    from .conftest import write_ben, write_lists

    recs = list(archive.iter_records(built[0] / ARCHIVE_NAME))
    names = []
    for product in sorted({r.product for r in recs}):
        mine = [r for r in recs if r.product == product][:2]
        names += [f.name for f in write_ben(tmp_path / "ben", mine, product + ".SAFE")]
    lists = write_lists(tmp_path / "lists", {"train": names[::2], "test": names[1::2]})
    calls = []
    real = bz2.decompress
    monkeypatch.setattr(bigearthnet_v1.bz2, "decompress", lambda data: calls.append(1) or real(data))
    manifest = build([tmp_path / "ben"], BuildConfig(upsampling="bilinear", out_dir=str(tmp_path / "o"), official_lists=str(lists),
                                                     progress=False))
    assert manifest["tiles_ok"] == len({r.product for r in recs}) >= 3 and not manifest["tiles_failed"]
    assert manifest["patches"] == len(names)
    assert len(calls) == 5


def test_a_patch_whose_super_resolution_fails_its_check_fails_alone(built, tmp_path, monkeypatch):
    """DSen2's output out of any plausible range on one patch (seen on a synthetic tile at 7,890
    patches) fails that patch, named, and the tile's other patches are built; it used to fail
    the whole tile source."""
    from bigearth.errors import InputError
    from dataset_builder import upsample

    from .conftest import write_ben
    recs = list(archive.iter_records(built[0] / ARCHIVE_NAME))
    recs = [r for r in recs if r.product == recs[0].product][:4]
    folders = write_ben(tmp_path / "ben", recs, recs[0].product + ".SAFE")
    real = upsample.upsample_with_context
    calls = []

    def check_one(up, b10, b20, b60, neighbours=None):  # the second patch built fails its check
        calls.append(1)
        if len(calls) == 2:
            raise InputError("w.npz", "DSen2 produced B01 values in [-142, 4164] from an input in [1, 1563]")
        return real(up, b10, b20, b60, neighbours)

    monkeypatch.setattr(upsample, "upsample_with_context", check_one)
    m = build([tmp_path / "ben"], BuildConfig(out_dir=str(tmp_path / "o"), upsampling="bilinear", progress=False),
              workers=1)
    assert m["patches"] == len(folders) - 1
    (name, why), = m["tiles_failed"].items()
    assert name in {f.name for f in folders} and why.startswith(str(tmp_path / "ben" / name) + ": w.npz: DSen2 produced")
    assert name not in {r.name for r in archive.iter_records(tmp_path / "o" / ARCHIVE_NAME)}


def test_a_copy_of_a_real_patch_fails_alone_its_l1c_source_read(tmp_path):
    """Real v1 patches name a Level-1C tile source (S2A_MSIL1C_...): a copy of one under another
    acquisition time claims its place, and the genuine patch (named after its source's
    acquisition) is kept while the copy fails, naming both; the other patches are untouched."""
    from dataset_builder.bigearthnet_v1 import group_by_tile_source

    src = fixtures_dir("bigearthnet-v1")
    ben = tmp_path / "ben"
    shutil.copytree(src, ben)
    genuine = ben / "S2A_MSIL2A_20170613T101031_87_48"
    meta = json.loads((genuine / f"{genuine.name}_labels_metadata.json").read_text())
    assert meta["tile_source"].startswith("S2A_MSIL1C_20170613T101031_")  # what the real archive holds
    copy = ben / genuine.name.replace("T101031", "T101032")
    shutil.copytree(genuine, copy)
    for f in list(copy.iterdir()):
        f.rename(copy / f.name.replace(genuine.name, copy.name))
    groups, failed, _ = group_by_tile_source(ben)
    source = meta["tile_source"].removesuffix(".SAFE")
    assert genuine in groups[source] and copy not in groups[source]
    assert list(failed) == [copy.name]
    assert genuine.name in failed[copy.name] and "kept: its name carries the tile's acquisition" in failed[copy.name]
    assert sum(len(v) for v in groups.values()) == len([p for p in src.iterdir() if p.is_dir()])
