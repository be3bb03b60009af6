"""dataset_builder/catalogue.py: the build's patches.parquet against the products' grids, an
independent screening of their SCL bands, the archive's rows and pyproj's footprints; v1 and v2
inputs; the README's geopandas and DuckDB snippets."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import rasterio
from pyproj import Transformer

from bigearth import nomenclature as nom
from dataset_builder import archive
from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build
from dataset_builder.catalogue import CATALOGUE_NAME, timestamp

from .conftest import fixtures_dir, make_v2

ROOT = Path(__file__).resolve().parents[1]
# the screening rule, written out again: SCL codes per reason in priority order, and the share of
# a patch's SCL pixels each may cover
RULE = (("nodata", (0, 1), 0.0), ("cloud", (8, 9), 0.01), ("cirrus", (10,), 0.05), ("shadow", (3,), 0.01),
        ("snow", (11,), 0.01))


def _expected_status(scl: np.ndarray, x: int, y: int) -> str:
    block = scl[y * 60:(y + 1) * 60, x * 60:(x + 1) * 60]
    for reason, codes, limit in RULE:
        if np.isin(block, codes).mean() > limit:
            return reason
    return "kept"


def test_one_row_per_grid_patch_with_its_screening(built, products):
    out, manifest, _ = built
    cat = gpd.read_parquet(out / CATALOGUE_NAME)
    assert manifest["outputs"][CATALOGUE_NAME] == hashlib.sha256((out / CATALOGUE_NAME).read_bytes()).hexdigest()
    for product in products:
        prefix = "_".join(product.name.split("_")[:3])
        rows = cat[cat["product"] == product.stem]
        (scl_path,) = product.rglob("*_SCL_20m.jp2")
        with rasterio.open(scl_path) as ds:
            scl = ds.read(1)
        side = scl.shape[0] // 60
        assert sorted(rows.name) == sorted(f"{prefix}_{x}_{y}" for x in range(side) for y in range(side))
        for r in rows.itertuples():
            want = _expected_status(scl, r.x, r.y)
            assert r.status == want or (want == "kept" and r.status == "no_labels"), (r.name, r.status, want)
    counts = cat.status.value_counts().to_dict()
    assert counts.pop("kept") == manifest["patches"]
    assert counts == {k: v for k, v in manifest["dropped"].items() if v}


def test_kept_rows_are_the_archive_rows(built):
    out = built[0]
    cat = gpd.read_parquet(out / CATALOGUE_NAME).set_index("name")
    recs = list(archive.iter_records(out / ARCHIVE_NAME))
    assert set(cat.index[cat.status == "kept"]) == {r.name for r in recs}
    for r in recs:
        row = cat.loc[r.name]
        assert (row["split"], row["tile"], row["crs"], row["x"], row["y"]) == (r.split, r.tile, r.crs, r.x, r.y)
        assert list(row["bounds"]) == list(r.bounds)
        assert list(row["labels"]) == nom.names_of(r.classes)
        assert list(row["labels_19"]) == nom.names_of(r.classes_19, nom.CLASS_NAMES_19)
        assert row["date"].isoformat() == r.date


def test_footprints_are_the_bounds_reprojected(built):
    """Each footprint's corners are pyproj's of its native bounds; the bbox column is its extent."""
    cat = gpd.read_parquet(built[0] / CATALOGUE_NAME)
    assert cat.crs.to_epsg() == 4326
    table = pq.read_table(built[0] / CATALOGUE_NAME)
    for crs, rows in cat.groupby("crs"):
        to_wgs = Transformer.from_crs(crs, 4326, always_xy=True)
        for r in rows.itertuples():
            ulx, uly, lrx, lry = r.bounds
            lon, lat = to_wgs.transform([ulx, lrx, lrx, ulx], [uly, uly, lry, lry])
            got = np.asarray(r.geometry.exterior.coords)[:-1]
            for corner in zip(lon, lat):
                assert np.abs(got - corner).sum(axis=1).min() < 1e-9
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    bbox = table.column("bbox").to_pylist()
    np.testing.assert_allclose([[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in bbox], cat.bounds.to_numpy())


def test_a_rebuild_keeps_the_same_catalogue(built, products, tmp_path):
    """Nothing changed: the resumed build's catalogue is byte for byte the first one."""
    out, manifest, cfg = built
    import shutil
    shutil.copytree(out, tmp_path / "again")
    again = build(products, dataclasses.replace(cfg, out_dir=str(tmp_path / "again")))
    assert again["outputs"][CATALOGUE_NAME] == manifest["outputs"][CATALOGUE_NAME]
    assert all(t["sha256"] == manifest["tiles"][i]["sha256"] for i, t in again["tiles"].items())


def test_bigearthnet_v1_and_v2_rows_from_their_geotiffs(tmp_path):
    """Real v1 patches (one on the snow list) and the v2 folder made of them: every patch a row,
    its footprint the B02 GeoTIFF's bounds reprojected, the screened ones included."""
    src = fixtures_dir("bigearthnet-v1")
    lists = fixtures_dir("bigearthnet-lists")
    build([src], BuildConfig(upsampling="bilinear", out_dir=str(tmp_path / "v1"), official_lists=str(lists),
                             progress=False))
    root = tmp_path / "v2"
    make_v2(src, root)
    build([root], BuildConfig(upsampling="bilinear", out_dir=str(tmp_path / "v2out"), progress=False))
    v1 = gpd.read_parquet(tmp_path / "v1" / CATALOGUE_NAME).set_index("name")
    v2 = gpd.read_parquet(tmp_path / "v2out" / CATALOGUE_NAME).set_index("name")
    folders = sorted(p for p in src.iterdir() if p.is_dir())
    assert sorted(v1.index) == [f.name for f in folders]
    assert len(v2) == len(folders) + 1  # make_v2's snowy copy, listed in the screened parquet
    for f in folders:
        with rasterio.open(f / f"{f.name}_B02.tif") as ds:
            b, crs = ds.bounds, ds.crs
        lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(
            [b.left, b.right, b.right, b.left], [b.top, b.top, b.bottom, b.bottom])
        meta = json.loads((f / f"{f.name}_labels_metadata.json").read_text())
        row = v1.loc[f.name]
        assert row["crs"] == f"EPSG:{crs.to_epsg()}" and sorted(row["labels"]) == sorted(meta["labels"])
        np.testing.assert_allclose(row.geometry.bounds, (min(lon), min(lat), max(lon), max(lat)), atol=1e-9)
        (v2row,) = [r for n, r in v2.iterrows() if n.endswith("_".join(f.name.split("_")[-2:])) and r.status == "kept"
                    and r["product"].startswith(f.name.split("_")[0])]
        np.testing.assert_allclose(v2row.geometry.bounds, row.geometry.bounds, atol=1e-9)
    assert v1.status.value_counts().to_dict() == {"kept": 3, "snow_list": 1}
    snowy = v2[v2.status == "snow_list"]
    assert len(snowy) == 1 and snowy.geometry.iloc[0] is not None and len(snowy.labels_19.iloc[0]) > 0
    assert snowy.labels.iloc[0] is None  # v2's 43 classes come from reference maps, which a screened patch is not read for


def test_times_as_real_bigearthnet_writes_them():
    assert timestamp("2018-02-04T09:41:61").isoformat() == "2018-02-04T09:42:01"  # S2B_MSIL2A_20180204T94161
    assert timestamp("2017-06-13 10:10:31").isoformat() == "2017-06-13T10:10:31" and timestamp("") is None


def _snippet(name: str, lang: str = "python") -> str:
    m = re.search(rf"<!-- snippet: {name} -->\n```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert m, f"README snippet {name} not found"
    return m.group(1)


def test_readme_geopandas_snippet(built):
    ns: dict = {}
    exec(_snippet("catalogue-geopandas").replace("out/demo/dataset", str(built[0])), ns)
    cat = gpd.read_parquet(built[0] / CATALOGUE_NAME)
    # the same question without geopandas' predicates: footprints' extents against the box, by hand
    b = cat.bounds
    inside = (b.maxx > -10.7) & (b.minx < -5.9) & (b.maxy > 51.4) & (b.miny < 55.4)
    want = cat[(cat.status == "kept") & (cat.date.dt.month == 6) & inside]
    assert len(want) > 0 and sorted(ns["june"].name) == sorted(want.name)
    assert ns["dropped"].to_dict() == {k: v for k, v in built[1]["dropped"].items() if v}
