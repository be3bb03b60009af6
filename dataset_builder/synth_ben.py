"""BigEarthNet inputs written from patches: v1 patch folders (12 GeoTIFFs and the label JSON) and
official lists, and the v2 (reBEN) layout (bands, reference maps, ``metadata.parquet``). The
synthetic generator's counterpart for the BigEarthNet readers: ``benchmarks/scale.py`` measures
their ingest at any size from a build's archive, and the tests write their fake inputs with it.
Written as BigEarthNet lays them out (names, grids, CRS, label JSON and parquet schemas)."""
from __future__ import annotations

import bz2
import json
import shutil
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from bigearth import nomenclature as nom
from bigearth.record import BAND_RESOLUTION, BANDS_10M, BANDS_20M, BANDS_60M


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


def write_lists(folder: Path, splits: dict[str, list[str]]) -> Path:
    """BigEarthNet v1's official lists (bz2 CSVs of patch names: the three splits, the snowy and the
    cloudy patches) of ``splits`` ({"train": [names], ..., "snow": [...], "cloud": [...]}) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, file in (("train", "train"), ("validation", "val"), ("test", "test"), ("snow", "patches_with_seasonal_snow"),
                      ("cloud", "patches_with_cloud_and_shadow")):
        (folder / f"{file}.csv.bz2").write_bytes(bz2.compress("\n".join(splits.get(key, [])).encode()))
    return folder


def v2_product_of(tile_source: str) -> str:
    """The v2 product folder name of a v1 patch's tile_source (``S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_...``
    -> ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP``; v1's five-digit times padded)."""
    mission, _, dt, _, orbit, tile = tile_source.split("_")[:6]
    day, time_ = dt.split("T")
    return f"{mission}_MSIL2A_{day}T{time_.zfill(6)}_N9999_{orbit}_{tile}"


def make_v2(src: Path, root: Path, splits=("train", "validation", "test", "train"), snow_copy: bool = True) -> dict:
    """A BigEarthNet v2 folder from v1 patch folders (real ones, or ``write_ben``'s): bands renamed into the v2 layout, a
    reference map whose CLC codes are the v1 labels (one band of columns each, the last label one
    column wide), ``metadata.parquet`` with the v2 schema (19-class labels mapped from v1's), and,
    with ``snow_copy``, one more patch listed as snowy in the screened parquet. Returns
    {v2 patch id: v1 folder} of the kept patches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

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
