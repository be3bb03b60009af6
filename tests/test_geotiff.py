"""dataset_builder/geotiff.py: the fast reader gives what GDAL (rasterio) reads, and hands to
rasterio whatever it does not describe exactly."""
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from bigearth.errors import InputError
from dataset_builder.geotiff import read_raster

from .conftest import fixtures_dir


def _gdal(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.count, ds.transform, ds.crs


def _write(path, a, transform, crs="EPSG:32633", **kw):
    a = a if a.ndim == 3 else a[None]
    profile = dict(driver="GTiff", width=a.shape[2], height=a.shape[1], count=a.shape[0], dtype=a.dtype,
                   crs=crs, transform=transform, **kw)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(a)
    return path


def _assert_same_as_gdal(path, via):
    r = read_raster(path)
    a, count, transform, crs = _gdal(path)
    assert r.via == via
    assert r.array.dtype == a.dtype and np.array_equal(r.array, a)
    assert (r.count, r.transform, r.crs) == (count, transform, crs)
    return r


def test_real_patch_bands_read_as_gdal_reads_them():
    src = fixtures_dir("bigearthnet-v1")
    tifs = sorted(src.glob("*/*.tif"))
    assert len(tifs) >= 12
    for p in tifs:
        _assert_same_as_gdal(p, "tifffile")


RNG = np.random.default_rng(0)
GRID = Affine(20.0, 0.0, 300000.0, 0.0, -20.0, 5400000.0)


@pytest.mark.parametrize("kw", [{}, {"compress": "deflate"}, {"compress": "deflate", "predictor": 2},
                                 {"compress": "lzw"}, {"compress": "zstd"}, {"compress": "packbits"},
                                 {"tiled": True, "blockxsize": 16, "blockysize": 16}])
def test_plain_geotiffs_any_layout(tmp_path, kw):
    a = RNG.integers(0, 12000, (60, 60), dtype=np.uint16)
    _assert_same_as_gdal(_write(tmp_path / "b.tif", a, GRID, **kw), "tifffile")


def _negative_y_scale(path, a):
    """A file whose pixel scale has a negative y (GDAL never writes one; GDAL reads it by rules of its own)."""
    import tifffile

    good = _write(path.with_name("g.tif"), a, GRID)
    with tifffile.TiffFile(good) as tif:
        tags = tif.pages.first.tags
        keys, ascii_ = tags["GeoKeyDirectoryTag"].value, tags["GeoAsciiParamsTag"].value
    tifffile.imwrite(path, a, extratags=[(33550, "d", 3, (20.0, -20.0, 0.0), True),
                                         (33922, "d", 6, (0.0, 0.0, 0.0, GRID.c, GRID.f, 0.0), True),
                                         (34735, "H", len(keys), keys, True), (34737, "s", 0, ascii_, True)])


@pytest.mark.parametrize("case", ["two bands", "rotated", "south up", "negative y scale", "pixel is point"])
def test_what_the_tie_point_does_not_describe_is_read_by_rasterio(tmp_path, case):
    a = RNG.integers(0, 12000, (60, 60), dtype=np.uint16)
    path = tmp_path / "b.tif"
    if case == "two bands":
        _write(path, np.stack([a, a]), GRID)
    elif case == "rotated":
        _write(path, a, GRID * Affine.rotation(10))
    elif case == "south up":
        _write(path, a, Affine(20.0, 0.0, GRID.c, 0.0, 20.0, GRID.f))
    elif case == "negative y scale":
        _negative_y_scale(path, a)
    else:  # pixel is point: GDAL shifts such a raster by half a pixel; a tie point alone would not
        _write(path, a, GRID)
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(AREA_OR_POINT="Point")
    r = _assert_same_as_gdal(path, "rasterio")
    if case == "pixel is point":  # the tie point is the first pixel's centre: read alone it would be half a pixel off
        import tifffile
        with tifffile.TiffFile(path) as tif:
            tie = tif.pages.first.tags["ModelTiepointTag"].value
        assert (tie[3], tie[4]) == (r.transform.c + 10, r.transform.f - 10)
    if case == "two bands":
        assert r.count == 2


def test_one_crs_object_per_set_of_geokeys(tmp_path):
    a = RNG.integers(0, 12000, (60, 60), dtype=np.uint16)
    r1 = read_raster(_write(tmp_path / "1.tif", a, GRID))
    r2 = read_raster(_write(tmp_path / "2.tif", a, GRID))
    r3 = read_raster(_write(tmp_path / "3.tif", a, GRID, crs="EPSG:32634"))
    assert r1.crs is r2.crs and r1.crs == CRS.from_epsg(32633)
    assert r3.crs == CRS.from_epsg(32634)


@pytest.mark.parametrize("fault,message", [("missing", "band file is missing"), ("empty", "band file is empty"),
                                           ("garbage", "cannot read as GeoTIFF"), ("truncated", "cannot read")])
def test_bad_files_are_named(tmp_path, fault, message):
    path = tmp_path / "x_B02.tif"
    if fault == "empty":
        path.write_bytes(b"")
    elif fault == "garbage":
        path.write_bytes(b"not a tiff at all" * 10)
    elif fault == "truncated":
        good = _write(tmp_path / "good.tif", RNG.integers(0, 12000, (120, 120), dtype=np.uint16), GRID)
        path.write_bytes(good.read_bytes()[:4000])
    with pytest.raises(InputError) as e:
        read_raster(path)
    assert str(path) in str(e.value) and message in str(e.value)
    assert "/vsimem/" not in str(e.value)
