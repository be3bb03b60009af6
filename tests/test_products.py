"""dataset_builder/products.py: each patch of a product against independent computations on the product's own files (GDAL reads, CORINE codes, SCL counts)."""
import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from bigearth import nomenclature as nom
from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, BANDS_SUPER
from dataset_builder import archive, upsample
from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build
from dataset_builder.safe import NATIVE, open_product
from dataset_builder.screening import DEFAULT_THRESHOLDS, SCL_CLASSES



def _records(out):
    return list(archive.iter_records(Path(out) / ARCHIVE_NAME))


def _read_window(path, row, col, size, offset):
    """An independent read of a patch window, with the offset removed as the metadata says."""
    with rasterio.open(path) as ds:
        a = ds.read(1, window=Window(col, row, size, size)).astype(np.int64)
    return np.clip(a + offset, 0, None)


def test_patch_names_bounds_and_native_arrays(built, products):
    out, manifest, _ = built
    recs = _records(out)
    assert len(recs) == manifest["patches"] > 0
    by_product = {open_product(p).name: open_product(p) for p in products}
    for r in recs:
        prod = by_product[r.product]
        assert r.name == f"{prod.mission}_MSIL2A_{prod.datetime}_{r.x}_{r.y}"
        geo = prod.geocoding
        # x and y computed back from the georeference, as BigEarthNet defines them
        assert (r.bounds[0] - geo.ulx) / 1200 == r.x and (geo.uly - r.bounds[1]) / 1200 == r.y
        assert r.bounds[2] - r.bounds[0] == 1200 and r.bounds[1] - r.bounds[3] == 1200
        assert r.crs == f"EPSG:{geo.epsg}" and r.tile == prod.tile
        for key, bands in (("data_10m", BANDS_10M), ("data_20m", BANDS_20M), ("data_60m", BANDS_60M)):
            arr = getattr(r, key)
            for i, band in enumerate(bands):
                f = NATIVE[band] // 10
                size = 120 // f
                expected = _read_window(prod.band_paths[band], r.y * size, r.x * size, size, prod.offsets[band])
                np.testing.assert_array_equal(arr[i], expected, err_msg=f"{r.name} {band}")
        np.testing.assert_array_equal(r.data_super[[BANDS_SUPER.index(b) for b in BANDS_10M]], r.data_10m)


def test_data_super_equals_gdal_bilinear(built, products):
    """data_super against GDAL's own bilinear upsampling of each whole band, cut afterwards."""
    out, _, _ = built
    recs = _records(out)
    for prod in map(open_product, products):
        mine = [r for r in recs if r.product == prod.name]
        n = prod.geocoding.size_10m
        for band in BANDS_20M + BANDS_60M:
            with rasterio.open(prod.band_paths[band]) as ds:
                up = ds.read(1, out_shape=(n, n), resampling=Resampling.bilinear, out_dtype="float32")
            up = np.clip(up + prod.offsets[band], 0, None)
            for r in mine:
                got = r.data_super[BANDS_SUPER.index(band)].astype(np.float64)
                exp = up[r.y * 120:(r.y + 1) * 120, r.x * 120:(r.x + 1) * 120]
                assert np.abs(got - exp).max() <= 1.0, (r.name, band)  # rounding only


def test_strips_equal_whole_tile_upsampling(products):
    prod = open_product(products[0])
    from dataset_builder.safe import read_band, to_reflectance_dn
    bands = {b: read_band(prod, b) for b in NATIVE}
    conv = lambda b, a: to_reflectance_dn(prod, b, a)  # noqa: E731
    up = upsample.get("bilinear")
    n = prod.geocoding.size_10m
    whole = upsample.upsample_rows(up, bands, conv, 0, n)
    strips = np.concatenate([upsample.upsample_rows(up, bands, conv, r, r + 120) for r in range(0, n, 120)], axis=1)
    np.testing.assert_array_equal(whole, strips)


def test_screening_counts_equal_an_independent_count(built, products):
    out, manifest, cfg = built
    expected = {k: 0 for k in SCL_CLASSES}
    kept = set()
    for prod in map(open_product, products):
        with rasterio.open(prod.band_paths["SCL"]) as ds:
            scl = ds.read(1)
        for y in range(prod.geocoding.grid_cols):
            for x in range(prod.geocoding.grid_cols):
                win = scl[y * 60:(y + 1) * 60, x * 60:(x + 1) * 60]
                reason = next((k for k, codes in SCL_CLASSES.items()
                               if np.isin(win, codes).mean() > DEFAULT_THRESHOLDS[k]), None)
                if reason:
                    expected[reason] += 1
                else:
                    kept.add(f"{prod.prefix}_{x}_{y}")
    got = manifest["dropped"]
    assert {k: got[k] for k in expected} == expected
    assert sum(expected.values()) > 0 and expected["cloud"] > 0 and expected["snow"] > 0
    assert got["no_labels"] == 0
    assert {r.name for r in _records(out)} == kept


def test_labels_equal_the_corine_codes_in_each_patch(built, synth_dir):
    out, _, _ = built
    for r in _records(out):
        clc = synth_dir / f"CLC_{r.tile}_4800m.tif"
        with rasterio.open(clc) as ds:  # same CRS, 60 m grid aligned to the patches: a plain window
            codes = ds.read(1, window=ds.window(r.bounds[0], r.bounds[3], r.bounds[2], r.bounds[1]))
        assert codes.shape == (20, 20)
        expected = sorted(nom.CLASS_NAMES[nom.CLC_CODES.index(c)] for c in np.unique(codes))
        assert sorted(nom.names_of(r.classes)) == expected, r.name
        np.testing.assert_array_equal(r.classes_19, nom.to_19(r.classes))


def test_labels_from_a_reprojected_corine_raster(built, synth_dir, products, tmp_path):
    """The CORINE raster in EPSG:3035 at 100 m, as Copernicus ships it: labels from the reprojection."""
    from rasterio.warp import calculate_default_transform, reproject
    src_path = synth_dir / "CLC_T33UUP_4800m.tif"
    dst_path = tmp_path / "clc_3035.tif"
    with rasterio.open(src_path) as src:
        tr, w, h = calculate_default_transform(src.crs, "EPSG:3035", src.width, src.height, *src.bounds, resolution=100)
        # pad so the tile is fully covered after reprojection
        tr = tr @ rasterio.Affine.translation(-20, -20)
        w, h = w + 40, h + 40
        dst = np.zeros((h, w), np.uint16)
        reproject(rasterio.band(src, 1), dst, dst_transform=tr, dst_crs="EPSG:3035", resampling=Resampling.nearest)
        with rasterio.open(dst_path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint16",
                           crs="EPSG:3035", transform=tr, nodata=0) as d:
            d.write(dst, 1)
    cfg = BuildConfig(out_dir=str(tmp_path / "b"), clc=[str(dst_path)], progress=False)
    prod = [p for p in products if "T33UUP" in p.name]
    manifest = build(prod, cfg)
    assert not manifest["tiles_failed"]
    ref = {r.name: r for r in _records(built[0]) if r.tile == "T33UUP"}
    got = _records(tmp_path / "b")
    # 100 m cells straddle patch borders, so a class may appear or vanish at a border; the
    # dominant classes agree
    agree = [len(set(nom.names_of(r.classes)) & set(nom.names_of(ref[r.name].classes))) > 0 for r in got if r.name in ref]
    assert agree and all(agree)


def test_products_labelled_from_bigearthnet_jsons(built, products, tmp_path):
    """Label JSONs written from the reference build's labels give the same archive labels;
    a patch without a JSON is dropped as no_labels; a wrong coordinate is an error."""
    ref = [r for r in _records(built[0]) if "T33UUP" in r.product]
    labels_dir = tmp_path / "labels"
    for r in ref[1:]:  # leave the first patch without a JSON
        d = labels_dir / r.name
        d.mkdir(parents=True)
        (d / f"{r.name}_labels_metadata.json").write_text(json.dumps({
            "labels": nom.names_of(r.classes), "projection": r.crs, "tile_source": r.product,
            "acquisition_date": r.date.replace("T", " "),
            "coordinates": dict(zip(("ulx", "uly", "lrx", "lry"), r.bounds))}))
    prod = [p for p in products if "T33UUP" in p.name]
    manifest = build(prod, BuildConfig(out_dir=str(tmp_path / "o"), labels_json=str(labels_dir), progress=False))
    assert not manifest["tiles_failed"]
    got = {r.name: r for r in _records(tmp_path / "o")}
    assert set(got) == {r.name for r in ref[1:]}
    assert manifest["dropped"]["no_labels"] == 1
    for r in ref[1:]:
        np.testing.assert_array_equal(got[r.name].classes, r.classes)
    # coordinates that belong to another patch
    victim = labels_dir / ref[1].name / f"{ref[1].name}_labels_metadata.json"
    meta = json.loads(victim.read_text())
    meta["coordinates"]["ulx"] += 1200
    meta["coordinates"]["lrx"] += 1200
    victim.write_text(json.dumps(meta))
    manifest = build(prod, BuildConfig(out_dir=str(tmp_path / "o2"), labels_json=str(labels_dir), progress=False))
    err = next(iter(manifest["tiles_failed"].values()))
    assert victim.name in err and "are not those of patch" in err
