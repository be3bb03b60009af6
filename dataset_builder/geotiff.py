"""The small single-band GeoTIFFs of BigEarthNet patch folders (v1 and v2 bands, v2 reference
maps), read fast and checked against GDAL's reading.

A patch is 13 files of 0.8-29 kB. Opening one through rasterio costs ~0.4 ms and reading it
~0.15 ms, whatever its size, so a bare rasterio read of a patch folder takes ~7.5 ms, most of the
ingest's time. tifffile parses such a file in ~0.1 ms (benchmarks/RESULTS.md). So the pixels
come from tifffile, and the georeference from the file's GeoTIFF tags, used only where their
meaning is plain: one image, one sample, a positive pixel scale and one tie point, pixels as areas (the
geotransform is then (sx, 0, x - i sx, 0, -sy, y + j sy), what GDAL computes). The CRS is
GDAL's reading of the GeoKeys, made once per distinct set of keys (a product's patches share
one). Anything else (a point-registered or rotated raster, several bands, a format tifffile does
not know) is read by rasterio, as are the errors, so a bad file is described as GDAL sees it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from pathlib import Path

import numpy as np
import tifffile
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from bigearth.errors import InputError
from bigearth.files import read_digested

# tifffile logs what it finds odd in a file; rasterio then reads that file and says what is wrong
logging.getLogger("tifffile").setLevel(logging.ERROR)

_GEOKEYS, _GEO_DOUBLE, _GEO_ASCII = 34735, 34736, 34737
_PIXEL_SCALE, _TIEPOINT, _MODEL_TRANSFORM = 33550, 33922, 34264
_RASTER_TYPE_KEY, _PIXEL_IS_AREA = 1025, 1


@dataclasses.dataclass
class Raster:
    """One band: its pixels, the raster's band count and geotransform, and its CRS."""

    array: np.ndarray
    count: int
    transform: Affine
    crs: CRS | None
    via: str  # "tifffile" or "rasterio": which reader gave the pixels


# What a patch's GeoTIFF can be (a band, or a v2 reference map): 120 x 120 pixels at most (the
# 10 m bands), one band; 28.8 kB of uint16 pixels, so 1 MiB with any tags and the worst
# compression. Both checked before the pixels are decoded: a 1.2 MB file declaring 100,000 x
# 100,000 pixels would otherwise be decoded into 20 GB.
PATCH_MAX_SIDE = 120
PATCH_MAX_BANDS = 16
PATCH_FILE_MAX_BYTES = 1 << 20


class _Oversized(Exception):
    """A raster whose header declares more than a patch can be: (height, width, bands)."""


def read_raster(path: Path, what: str = "band file") -> Raster:
    """The first band of a patch GeoTIFF with its georeference; a missing, empty or unreadable
    file is an InputError naming it (``what`` says what the file is), and so is one whose size or
    declared raster (``PATCH_MAX_SIDE``, ``PATCH_MAX_BANDS``) is more than a patch can be, before
    its pixels are decoded. The file is read once, through ``read_digested`` (its digest recorded
    for the build's fingerprint)."""
    path = Path(path)
    try:
        data = read_digested(path, PATCH_FILE_MAX_BYTES, what)
    except FileNotFoundError:
        raise InputError(path, f"{what} is missing") from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None
    if not data:
        raise InputError(path, f"{what} is empty")
    try:
        fast = _read_plain(data)
    except _Oversized as e:
        _refuse(path, what, *e.args)
    if fast is not None:
        return fast
    with open_bytes(path, data) as ds:
        if max(ds.height, ds.width) > PATCH_MAX_SIDE or ds.count > PATCH_MAX_BANDS:
            _refuse(path, what, ds.height, ds.width, ds.count)
        return Raster(ds.read(1), ds.count, ds.transform, ds.crs, "rasterio")


def _refuse(path: Path, what: str, height: int, width: int, bands: int):
    raise InputError(path, f"{what} declares {width:,} x {height:,} pixels in {bands:,} band(s), more than a patch "
                           f"can be ({PATCH_MAX_SIDE} x {PATCH_MAX_SIDE}, at most {PATCH_MAX_BANDS} bands): not decoded")


@contextlib.contextmanager
def open_bytes(path: Path, data: bytes):
    """A rasterio dataset on a file's bytes; GDAL's errors name ``path``, not the in-memory copy."""
    with MemoryFile(data) as mem:
        try:
            ds = mem.open()
        except RasterioIOError as e:
            raise InputError(path, f"cannot read as GeoTIFF ({str(e).replace(repr(mem.name), path.name)})") from None
        with ds:
            try:
                yield ds
            except RasterioIOError as e:
                raise InputError(path, f"cannot read ({e})") from None


def _read_plain(data: bytes) -> Raster | None:
    """The raster, when it is the plain case tifffile and a tie point describe exactly; else None."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if len(tif.pages) != 1:
                return None
            page = tif.pages.first
            if max(page.imagelength, page.imagewidth) > PATCH_MAX_SIDE or page.samplesperpixel > PATCH_MAX_BANDS:
                raise _Oversized(page.imagelength, page.imagewidth, page.samplesperpixel)
            if page.samplesperpixel != 1 or page.ndim != 2 or _MODEL_TRANSFORM in page.tags:
                return None
            tags = page.tags
            scale, tie, keys = (tags.get(c) for c in (_PIXEL_SCALE, _TIEPOINT, _GEOKEYS))
            if scale is None or tie is None or keys is None or len(tie.value) != 6:
                return None
            sx, sy = float(scale.value[0]), float(scale.value[1])
            if not (sx > 0 and sy > 0):  # GDAL has its own rules for a negative y scale
                return None
            keys = tuple(keys.value)
            if _raster_type(keys) != _PIXEL_IS_AREA:
                return None
            extra = tuple(tuple(tags[c].value) if c == _GEO_DOUBLE else tags[c].value
                          for c in (_GEO_DOUBLE, _GEO_ASCII) if c in tags)
            array = page.asarray()
    except _Oversized:
        raise
    except Exception:  # noqa: BLE001 - whatever tifffile cannot parse, rasterio reads or explains
        return None
    i, j, _, x, y, _ = (float(v) for v in tie.value)
    crs = _crs_of(keys, extra, data)
    if crs is None:
        return None
    return Raster(array, 1, Affine(sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy), crs, "tifffile")


def _raster_type(keys: tuple) -> int:
    """GTRasterTypeGeoKey from a GeoKeyDirectory (header of 4 shorts, then 4 per key); GDAL
    takes an absent key as pixels-are-areas."""
    for k in range(4, 4 + 4 * keys[3], 4):
        if keys[k] == _RASTER_TYPE_KEY and keys[k + 1] == 0:
            return keys[k + 3]
    return _PIXEL_IS_AREA


_CRS_BY_KEYS: dict = {}


def _crs_of(keys: tuple, extra: tuple, data: bytes) -> CRS | None:
    """GDAL's CRS for these GeoKeys, parsed from the first file that carries them."""
    k = (keys, extra)
    if k not in _CRS_BY_KEYS:
        if len(_CRS_BY_KEYS) > 256:  # a handful of UTM zones in practice
            _CRS_BY_KEYS.clear()
        try:
            with MemoryFile(data) as mem, mem.open() as ds:
                _CRS_BY_KEYS[k] = ds.crs
        except RasterioIOError:
            return None
    return _CRS_BY_KEYS[k]
