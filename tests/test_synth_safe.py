"""Synthetic products are real L2A products to GDAL, rasterio and our reader."""
import re
import shutil
import zipfile

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from bigearth.errors import InputError
from dataset_builder.safe import NATIVE, open_product, read_band, to_reflectance_dn
from dataset_builder.synth import SynthConfig, render_scene
from dataset_builder.tiles import REAL_TILES
from bigearth.record import BANDS_SUPER

from .conftest import fixtures_dir


def test_safe_naming_and_layout(products):
    for p in products:
        assert re.fullmatch(r"S2[AB]_MSIL2A_\d{8}T\d{6}_N\d{4}_R\d{3}_T\d{2}[A-Z]{3}_\d{8}T\d{6}\.SAFE", p.name)
        assert (p / "MTD_MSIL2A.xml").exists() and (p / "manifest.safe").exists()
        granules = list((p / "GRANULE").iterdir())
        assert len(granules) == 1 and re.fullmatch(r"L2A_T\d{2}[A-Z]{3}_A\d{6}_\d{8}T\d{6}", granules[0].name)
        tile, date = p.name.split("_")[5], p.name.split("_")[2]
        for band, res in NATIVE.items():
            assert (granules[0] / "IMG_DATA" / f"R{res}m" / f"{tile}_{date}_{band}_{res}m.jp2").exists()


def test_gdal_sentinel2_driver_opens_them(products):
    for p in products:
        tile = p.name.split("_")[5]
        epsg = REAL_TILES[tile][0]
        with rasterio.open(p / "MTD_MSIL2A.xml") as ds:
            subs = ds.subdatasets
        assert any(s.endswith(f":10m:EPSG_{epsg}") for s in subs), subs
        with rasterio.open(f"SENTINEL2_L2A:{p / 'MTD_MSIL2A.xml'}:10m:EPSG_{epsg}") as ds:
            assert ds.crs.to_epsg() == epsg
            assert ds.transform == Affine(10, 0, REAL_TILES[tile][1], 0, -10, REAL_TILES[tile][2])
            names = [ds.tags(i + 1).get("BANDNAME") for i in range(ds.count)]
            assert set(names) == {"B2", "B3", "B4", "B8", "AOT", "WVP"}
            # the driver's pixels are the band files' pixels
            prod = open_product(p)
            np.testing.assert_array_equal(ds.read(names.index("B2") + 1), read_band(prod, "B02"))


def test_bands_have_tile_crs_transform_and_offsets(products):
    for p in products:
        prod = open_product(p)
        epsg, ulx, uly = REAL_TILES[prod.tile]
        for band, res in NATIVE.items():
            with rasterio.open(prod.band_paths[band]) as ds:
                assert ds.driver == "JP2OpenJPEG" and ds.dtypes[0] in ("uint16", "uint8")
                assert ds.crs.to_epsg() == epsg
                assert ds.transform == Affine(res, 0, ulx, 0, -res, uly)
                assert ds.width == 4800 // res
        new = float(prod.baseline) >= 4
        assert set(prod.offsets[b] for b in BANDS_SUPER) == ({-1000.0} if new else {0.0})


def test_coarse_bands_are_block_means_of_the_truth(products):
    for p in products:
        prod = open_product(p)
        with rasterio.open(p / "truth_10m.tif") as ds:
            truth = ds.read().astype(np.float64)
        for band in ("B05", "B11", "B01", "B09"):
            f = NATIVE[band] // 10
            t = truth[BANDS_SUPER.index(band)]
            mean = t.reshape(t.shape[0] // f, f, -1, f).mean(axis=(1, 3))
            got = to_reflectance_dn(prod, band, read_band(prod, band))
            valid = mean > 0
            # the truth file is itself rounded to integers, so block means differ by < 1
            assert np.abs(got[valid] - mean[valid]).max() <= 1.0


def test_scl_codes_and_deterministic_scene():
    cfg = SynthConfig(tile_size_m=2400, seed=5, cloud_cover=0.2, snow_cover=0.1, nodata_cover=0.1)
    t1, lc1, scl1 = render_scene(cfg)
    t2, lc2, scl2 = render_scene(cfg)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(scl1, scl2)
    assert set(np.unique(scl1)) <= set(range(12))
    assert {0, 3, 9, 11} <= set(np.unique(scl1).tolist())
    # classes have distinct spectra: every pair differs by > 3 % in some band
    from dataset_builder.synth import class_spectra
    s = class_spectra()
    rel = np.abs(s[:, None] - s[None]) / s[None]
    assert (rel.max(axis=2) + np.eye(len(s)) > 0.03).all()


def test_zip_product_reads_like_the_folder(products, tmp_path):
    p = products[0]
    zpath = tmp_path / (p.name.removesuffix(".SAFE") + ".zip")
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as z:
        for f in p.rglob("*"):
            if f.is_file():
                z.write(f, f"{p.name}/{f.relative_to(p)}")
    a, b = open_product(p), open_product(zpath)
    assert (a.name, a.geocoding, a.offsets) == (b.name, b.geocoding, b.offsets)
    for band in ("B02", "SCL", "B09"):
        np.testing.assert_array_equal(read_band(a, band), read_band(b, band))


def test_real_metadata_of_both_baselines():
    base = fixtures_dir("safe-metadata")
    old = next((base / "baseline-02.05").glob("*.SAFE"))
    prod = open_product(old)
    assert prod.baseline == "02.05" and prod.tile == "T34VFJ" and prod.quantification == 10000
    assert prod.geocoding.epsg == 32634 and (prod.geocoding.ulx, prod.geocoding.uly) == (600000, 6400020)
    assert prod.geocoding.size_10m == 10980 and prod.geocoding.grid_cols == 91
    assert set(prod.offsets.values()) == {0.0}
    assert prod.band_paths["B05"].endswith("R20m/L2A_T34VFJ_20170823T094031_B05_20m.jp2")
    assert prod.band_paths["B01"].endswith("R60m/L2A_T34VFJ_20170823T094031_B01_60m.jp2")
    assert prod.band_paths["SCL"].endswith("_SCL_20m.jp2")
    # the 05.09 product ships no granule MTD_TL.xml: a clear error, naming the folder
    new = next((base / "baseline-05.09").glob("*.SAFE"))
    with pytest.raises(InputError, match="expected one granule MTD_TL.xml"):
        open_product(new)


def test_new_baseline_metadata_offsets(tmp_path):
    """The real 05.09 MTD_MSIL2A.xml with a granule MTD_TL.xml added: offsets and band paths."""
    base = fixtures_dir("safe-metadata")
    src = next((base / "baseline-05.09").glob("*.SAFE"))
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    tl = next((base / "baseline-02.05").glob("*.SAFE/GRANULE/*/MTD_TL.xml"))
    (dst / "GRANULE" / "L2A_T34UCF_A033753_20230823T095553").mkdir(parents=True)
    shutil.copy(tl, dst / "GRANULE" / "L2A_T34UCF_A033753_20230823T095553" / "MTD_TL.xml")
    prod = open_product(dst)
    assert prod.baseline == "05.09" and set(prod.offsets.values()) == {-1000.0}
    assert prod.band_paths["B8A"].endswith("IMG_DATA/R20m/T34UCF_20230823T095559_B8A_20m.jp2")
    assert prod.prefix == "S2B_MSIL2A_20230823T095559"
