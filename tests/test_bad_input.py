"""Every kind of bad input: a clear error naming the file, the other tiles finish, exit code says so."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build
from dataset_builder.errors import InputError
from dataset_builder.labels import read_label_json

from .conftest import copy_products


def _band(product_dir: Path, band: str) -> Path:
    return next(product_dir.rglob(f"*_{band}_*m.jp2"))


def _corrupt_truncate(p):
    f = _band(p, "B03")
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    return f, "cannot decode"


def _corrupt_garbage(p):
    f = _band(p, "B11")
    data = bytearray(f.read_bytes())
    data[200:4000] = bytes(3800)
    f.write_bytes(bytes(data))
    return f, "cannot decode|raster is|expected one"


def _missing_band(p):
    f = _band(p, "B8A")
    f.unlink()
    return f, "cannot decode|No such file|does not exist"


def _rewrite(f: Path, crop: int = 0, **profile) -> None:
    """Write the band file again with a changed profile (and optionally a cropped raster)."""
    with rasterio.open(f) as ds:
        prof = ds.profile
        a = ds.read(1)
    if crop:
        a = a[:-crop, :-crop]
    prof.update(width=a.shape[1], height=a.shape[0], **profile)
    f.unlink()
    with rasterio.open(f, "w", **prof) as ds:
        ds.write(a, 1)


def _wrong_size(p):
    f = _band(p, "B05")
    _rewrite(f, crop=6)
    return f, "raster is 234 x 234, the tile geocoding says 240 x 240"


def _wrong_crs(p):
    f = _band(p, "B09")
    _rewrite(f, crs="EPSG:32632")
    return f, "does not match the tile's EPSG"


def _malformed_mtd(p):
    f = p / "MTD_MSIL2A.xml"
    f.write_text(f.read_text()[:500])
    return f, "malformed XML"


def _malformed_tile_mtd(p):
    f = next(p.rglob("MTD_TL.xml"))
    f.write_text(re.sub(r"<NROWS>\d+</NROWS>", "<NROWS>241</NROWS>", f.read_text(), count=1))
    return f, "not square"


def _missing_image_entry(p):
    f = p / "MTD_MSIL2A.xml"
    f.write_text(re.sub(r"\s*<IMAGE_FILE>[^<]*_B12_20m</IMAGE_FILE>", "", f.read_text()))
    return f, "no IMAGE_FILE entry for band B12"


CASES = [_corrupt_truncate, _corrupt_garbage, _missing_band, _wrong_size, _wrong_crs, _malformed_mtd,
         _malformed_tile_mtd, _missing_image_entry]


@pytest.mark.parametrize("damage", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_bad_product_is_recorded_and_the_rest_finish(damage, products, synth_dir, tmp_path, built):
    copies = copy_products(products, tmp_path)
    bad = copies[1]
    path, pattern = damage(bad)
    clc = built[2].clc
    cfg = BuildConfig(out_dir=str(tmp_path / "out"), clc=clc, progress=False)
    manifest = build(copies, cfg)
    failed = manifest["tiles_failed"]
    assert list(failed) == [bad.name.removesuffix(".SAFE")]
    err = next(iter(failed.values()))
    assert path.name in err and re.search(pattern, err), err
    assert manifest["tiles_ok"] == 2 and manifest["patches"] > 0
    # strict mode stops at that input with the same message
    with pytest.raises(InputError) as e:
        build(copies, BuildConfig(out_dir=str(tmp_path / "strict"), clc=clc, strict=True, progress=False))
    assert path.name in str(e.value)


def test_cli_exit_code_reports_failed_tiles(products, tmp_path, built):
    copies = copy_products(products[:2], tmp_path)
    _corrupt_truncate(copies[0])
    cmd = [sys.executable, "-m", "bigearth.cli", "build", *map(str, copies), "--out", str(tmp_path / "o"),
           "--no-progress", *[a for c in built[2].clc for a in ("--clc", c)]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and "failed" in r.stdout
    assert (tmp_path / "o" / ARCHIVE_NAME).exists()
    r = subprocess.run(cmd + ["--strict"], capture_output=True, text=True)
    assert r.returncode != 0 and "B03" in r.stderr


def test_unknown_corine_code_names_the_raster(products, tmp_path, synth_dir):
    src = synth_dir / "CLC_T33UUP_4800m.tif"
    bad = tmp_path / "clc_bad.tif"
    with rasterio.open(src) as ds:
        prof, a = ds.profile, ds.read(1)
    a[5, 5] = 777
    with rasterio.open(bad, "w", **prof) as ds:
        ds.write(a, 1)
    prod = [p for p in products if "T33UUP" in p.name]
    manifest = build(prod, BuildConfig(out_dir=str(tmp_path / "o"), clc=[str(bad)], progress=False))
    err = next(iter(manifest["tiles_failed"].values()))
    assert "clc_bad.tif" in err and "777" in err


def test_corine_not_covering_the_tile(products, tmp_path, synth_dir):
    prod = [p for p in products if "T29UPU" in p.name]
    clc = [str(synth_dir / "CLC_T33UUP_4800m.tif")]
    manifest = build(prod, BuildConfig(out_dir=str(tmp_path / "o"), clc=clc, progress=False))
    assert "no CORINE raster covers the tile" in next(iter(manifest["tiles_failed"].values()))


@pytest.mark.parametrize("content,pattern", [
    ("{not json", "malformed label JSON"),
    ('{"labels": ["Mixed forrest"], "coordinates": {"ulx": 0, "uly": 1200, "lrx": 1200, "lry": 0}, "projection": "", '
     '"tile_source": "x", "acquisition_date": "2017-01-01 00:00:00"}', "unknown BigEarthNet class name 'Mixed forrest'"),
    ('{"labels": "Pastures", "coordinates": {}, "projection": "", "tile_source": "x", "acquisition_date": ""}',
     "'labels' must be a list"),
    ('{"labels": []}', "has no 'coordinates'"),
])
def test_malformed_label_json(tmp_path, content, pattern):
    f = tmp_path / "P_labels_metadata.json"
    f.write_text(content)
    with pytest.raises(InputError, match=pattern) as e:
        read_label_json(f)
    assert str(f) in str(e.value)
