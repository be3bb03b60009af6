from __future__ import annotations

import bz2
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from bigearth import nomenclature as nom
from bigearth.record import BAND_RESOLUTION, BANDS_10M, BANDS_20M, BANDS_60M

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("BIGEARTH_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def fixtures_dir(sub: str) -> Path:
    path = FIXTURES / sub
    if not path.exists():
        pytest.skip(f"real fixtures not found at {path} (see ../shared/fixtures/README.md)")
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Three small synthetic products (4.8 km tiles: 16 patches each), old and new baselines, with truth."""
    from dataset_builder.synth import SynthConfig, write_product

    out = tmp_path_factory.mktemp("synth")
    for tile, date, baseline in (("T33UUP", "20170613T101031", "05.00"), ("T29UPU", "20170617T113321", "02.14"),
                                 ("T35VPK", "20180204T094159", "05.09")):
        write_product(SynthConfig(tile=tile, date=date, baseline=baseline, tile_size_m=4800, seed=3,
                                  cloud_cover=0.15, snow_cover=0.08, nodata_cover=0.05, write_truth=True), out)
    return out


@pytest.fixture(scope="session")
def products(synth_dir) -> list[Path]:
    return sorted(synth_dir.glob("*.SAFE"))


@pytest.fixture(scope="session")
def built(synth_dir, products, tmp_path_factory):
    """One reference build of the synthetic products (1 worker)."""
    from dataset_builder.build import BuildConfig, build

    out = tmp_path_factory.mktemp("built")
    # bilinear: the reference the mechanics tests (and TFDS's super_bilinear) compare with; the DSen2
    # default is built in tests/test_sr_build.py
    cfg = BuildConfig(out_dir=str(out), upsampling="bilinear", clc=sorted(str(p) for p in synth_dir.glob("CLC_*.tif")),
                      progress=False)
    manifest = build(products, cfg)
    return out, manifest, cfg


def copy_products(products, dest: Path) -> list[Path]:
    out = []
    for p in products:
        shutil.copytree(p, dest / p.name)
        out.append(dest / p.name)
    return out


def write_ben(folder: Path, records, tile_source: str) -> list[Path]:
    """BigEarthNet v1 patch folders (12 uint16 GeoTIFFs and the label JSON) from archive records,
    as the archive lays them out."""
    out = []
    for r in records:
        d = folder / r.name
        d.mkdir(parents=True)
        for key, bands in (("data_10m", BANDS_10M), ("data_20m", BANDS_20M), ("data_60m", BANDS_60M)):
            cube = getattr(r, key)
            for i, b in enumerate(bands):
                res = BAND_RESOLUTION[b]
                with rasterio.open(d / f"{r.name}_{b}.tif", "w", driver="GTiff", width=cube.shape[2],
                                   height=cube.shape[1], count=1, dtype="uint16", crs=r.crs,
                                   transform=from_origin(r.bounds[0], r.bounds[1], res, res)) as ds:
                    ds.write(cube[i], 1)
        (d / f"{r.name}_labels_metadata.json").write_text(json.dumps({
            "labels": nom.names_of(r.classes), "projection": r.crs, "tile_source": tile_source,
            "acquisition_date": r.date.replace("T", " "),
            "coordinates": dict(zip(("ulx", "uly", "lrx", "lry"), r.bounds))}))
        out.append(d)
    return out


def flip_byte(path, offset: int) -> None:
    """One bit of a file flipped in place: damage that may still decode."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x01]))


def write_lists(folder: Path, splits: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, file in (("train", "train"), ("validation", "val"), ("test", "test"), ("snow", "patches_with_seasonal_snow"),
                      ("cloud", "patches_with_cloud_and_shadow")):
        (folder / f"{file}.csv.bz2").write_bytes(bz2.compress("\n".join(splits.get(key, [])).encode()))
    return folder


def archive_contents(path) -> dict:
    """Everything an archive holds that must not depend on how it was built (not the config attr)."""
    out = {}
    with h5py.File(path, "r") as f:
        for key in f:
            out[key] = f[key][:]
            for a, v in f[key].attrs.items():
                out[f"{key}@{a}"] = np.asarray(v)
    return out


def assert_same_archive(a, b) -> None:
    ca, cb = archive_contents(a), archive_contents(b)
    assert sorted(ca) == sorted(cb)
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)


# Tests that launch process groups (mpirun, torchrun, horovodrun) run on one xdist worker, one
# after another: on 2 cores, launchers started side by side were seen to fail to start (mpirun
# exiting 2 with no output while horovodrun ran beside it). Every other file stays on one worker.
_LAUNCHERS = {"test_mpi", "test_train", "test_demo"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        item.add_marker(pytest.mark.xdist_group("launchers" if module in _LAUNCHERS else module))


# shards of the reference build, shared by the tests of shards/*
SHARD_BYTES = 1_100_000  # two samples per shard


@pytest.fixture(scope="session")
def written(built, tmp_path_factory):
    """The reference build written as shards (two samples each, seed 7): (archive, manifest, folder, index)."""
    import shards
    from dataset_builder.build import ARCHIVE_NAME

    out, manifest, _ = built
    sdir = tmp_path_factory.mktemp("shards")
    index = shards.write_shards(out / ARCHIVE_NAME, sdir, SHARD_BYTES, seed=7, progress=False)
    return out / ARCHIVE_NAME, manifest, sdir, index


def archive_by_name(path) -> dict:
    from dataset_builder import archive
    return {r.name: r for r in archive.iter_records(path)}


def read_tar(path) -> dict[str, dict[str, bytes]]:
    """Independent of the reader: Python's tarfile, members grouped by the name before the first dot."""
    import tarfile

    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            key, ext = m.name.split(".", 1)
            out.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return out


def keys_of(sdir, split, rank, world, workers, **kw) -> list[str]:
    """The patch names one rank reads in an epoch, through a DataLoader with ``workers``."""
    import torch

    import shards
    ds = shards.load(sdir, split, rank=rank, world=world, with_meta=True, normalize=False, **kw)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    return [m["name"] for _, _, m in dl]


# --------------------------------------------------------------------------- BigEarthNet v2 layout

def v2_product_of(tile_source: str) -> str:
    """The v2 product folder name of a v1 patch's tile_source (``S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_...``
    -> ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP``; v1's five-digit times padded)."""
    mission, _, dt, _, orbit, tile = tile_source.split("_")[:6]
    day, time_ = dt.split("T")
    return f"{mission}_MSIL2A_{day}T{time_.zfill(6)}_N9999_{orbit}_{tile}"


def make_v2(src: Path, root: Path, splits=("train", "validation", "test", "train"), snow_copy: bool = True) -> dict:
    """A BigEarthNet v2 folder from real v1 patch folders: bands renamed into the v2 layout, a
    reference map whose CLC codes are the v1 labels (one band of columns each, the last label one
    column wide), ``metadata.parquet`` with the v2 schema (19-class labels mapped from v1's), and,
    with ``snow_copy``, one more patch listed as snowy in the screened parquet. Returns
    {v2 patch id: v1 folder} of the kept patches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M

    rows, screened, made = [], [], {}
    folders = sorted(p for p in src.iterdir() if p.is_dir())
    for i, folder in enumerate(folders + ([folders[0]] if snow_copy else [])):
        meta = json.loads((folder / f"{folder.name}_labels_metadata.json").read_text())
        product = v2_product_of(meta["tile_source"])
        x, y = folder.name.split("_")[-2:]
        if i == len(folders):  # the snowy copy: the same pixels one patch to the east
            x = str(int(x) + 1)
        pid = f"{product}_{x}_{y}"
        dst = root / "BigEarthNet-S2" / product / pid
        dst.mkdir(parents=True)
        for band in BANDS_10M + BANDS_20M + BANDS_60M:
            shutil.copyfile(folder / f"{folder.name}_{band}.tif", dst / f"{pid}_{band}.tif")
        with rasterio.open(folder / f"{folder.name}_B02.tif") as ds:
            profile = {"driver": "GTiff", "width": 120, "height": 120, "count": 1, "dtype": "uint16",
                       "crs": ds.crs, "transform": ds.transform}
        codes = [nom.CLC_CODES[nom.CLASS_NAMES.index(n)] for n in meta["labels"]]
        cmap = np.full((120, 120), codes[0], np.uint16)
        if len(codes) > 1:  # the last label gets one column (0.83 % of the patch), the others share the rest
            edges = np.linspace(0, 119, len(codes), dtype=int)
            for k, code in enumerate(codes[:-1]):
                cmap[:, edges[k]:edges[k + 1]] = code
            cmap[:, 119] = codes[-1]
        mdir = root / "Reference_Maps" / product / pid
        mdir.mkdir(parents=True)
        with rasterio.open(mdir / f"{pid}_reference_map.tif", "w", **profile) as ds:
            ds.write(cmap, 1)
        v43 = nom.multi_hot_from_names(meta["labels"])
        row = {"patch_id": pid, "labels": nom.names_of(nom.to_19(v43), nom.CLASS_NAMES_19),
               "split": splits[i % len(splits)], "country": "Austria", "s1_name": f"S1A_IW_GRDH_1SDV_X_{x}_{y}",
               "s2v1_name": folder.name, "contains_seasonal_snow": i == len(folders),
               "contains_cloud_or_shadow": False}
        if i == len(folders):
            screened.append(row)
        else:
            rows.append(row)
            made[pid] = folder
    schema = pa.schema([("patch_id", pa.string()), ("labels", pa.list_(pa.string())), ("split", pa.string()),
                        ("country", pa.string()), ("s1_name", pa.string()), ("s2v1_name", pa.string()),
                        ("contains_seasonal_snow", pa.bool_()), ("contains_cloud_or_shadow", pa.bool_())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "metadata.parquet")
    pq.write_table(pa.Table.from_pylist(screened, schema=schema),
                   root / "metadata_for_patches_with_snow_cloud_or_shadow.parquet")
    return made
