"""Reading Sentinel-2 Level-2A SAFE products (folder or .zip), located through their metadata.

Band files are taken from the IMAGE_FILE (baseline >= 02.07) or IMAGE_FILE_2A (the 2017
"Level-2Ap" products) entries of MTD_MSIL2A.xml, never from guessed names; the tile geocoding
comes from the granule's MTD_TL.xml and every band is checked against it.
"""
from __future__ import annotations

import dataclasses
import math
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine

from bigearth.record import BAND_RESOLUTION, PATCH_M

from bigearth.errors import InputError

BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
NATIVE = {**BAND_RESOLUTION, "SCL": 20}
_PRODUCT_RE = re.compile(
    r"^(?P<mission>S2[ABCD])_MSIL2A_(?P<datetime>\d{8}T\d{6})_N(?P<baseline>\d{4})_R(?P<orbit>\d{3})"
    r"_(?P<tile>T\d{2}[A-Z]{3})_(?P<proc>\d{8}T\d{6})(\.SAFE)?$"
)


@dataclasses.dataclass(frozen=True)
class TileGeocoding:
    epsg: int
    ulx: float
    uly: float
    size_10m: int  # rows == cols, pixels at 10 m

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    def transform(self, res: int) -> Affine:
        return Affine(res, 0.0, self.ulx, 0.0, -res, self.uly)

    def size(self, res: int) -> int:
        return self.size_10m * 10 // res

    @property
    def grid_cols(self) -> int:
        """Number of complete 1,200 m patches along a side; border remainders are dropped."""
        return self.size_10m * 10 // PATCH_M


@dataclasses.dataclass(frozen=True)
class Product:
    """What the builder needs of one L2A product; ``band_paths`` are GDAL-openable paths."""

    path: Path
    name: str  # SAFE name without .SAFE
    mission: str
    datetime: str  # YYYYMMDDTHHMMSS
    baseline: str  # e.g. "05.09"
    tile: str
    geocoding: TileGeocoding
    band_paths: dict  # band id -> path
    quantification: float
    offsets: dict  # band id -> BOA add offset (0 before baseline 04.00)
    # Image_Content_QI percentages the product states (NODATA_PIXEL_PERCENTAGE, ...) and
    # CLOUD_COVERAGE_ASSESSMENT; empty when its metadata has none
    quality: dict = dataclasses.field(default_factory=dict)

    def expected_kept_share(self) -> float:
        """The share of the tile's patches that screening is expected to keep, from what the
        metadata states: 1 - (no data + clouds + cirrus + shadow + snow); 1 when it states nothing.
        An estimate (clouds cluster, so more patches survive than pixels), used to balance work."""
        q = self.quality
        if not q:
            return 1.0
        nodata = q.get("NODATA_PIXEL_PERCENTAGE", 0.0) / 100
        lost = sum(q.get(k, 0.0) for k in ("MEDIUM_PROBA_CLOUDS_PERCENTAGE", "HIGH_PROBA_CLOUDS_PERCENTAGE",
                                           "THIN_CIRRUS_PERCENTAGE", "CLOUD_SHADOW_PERCENTAGE",
                                           "SNOW_ICE_PERCENTAGE")) / 100
        if not any(k in q for k in ("MEDIUM_PROBA_CLOUDS_PERCENTAGE", "HIGH_PROBA_CLOUDS_PERCENTAGE")):
            lost += q.get("CLOUD_COVERAGE_ASSESSMENT", 0.0) / 100  # older products state only the total
        return float(min(1.0, max(0.0, (1 - nodata) * (1 - min(1.0, lost)))))

    @property
    def prefix(self) -> str:
        """Patch-name prefix, as BigEarthNet names patches: ``S2A_MSIL2A_20170613T101031``."""
        return f"{self.mission}_MSIL2A_{self.datetime}"

    @property
    def iso_date(self) -> str:
        d = self.datetime
        return f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[9:11]}:{d[11:13]}:{d[13:15]}"

    @property
    def patch_count(self) -> int:
        return self.geocoding.grid_cols ** 2


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_all(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if _local(el.tag) == name]


def _find_text(root: ET.Element, names: tuple[str, ...], source) -> str:
    for name in names:
        found = _find_all(root, name)
        if found and found[0].text:
            return found[0].text.strip()
    raise InputError(source, f"metadata has no {' or '.join(names)} element")


def products_in(folder: Path) -> list[Path]:
    """The Level-2A products a folder holds (``*.SAFE`` folders and ``S2?_MSIL2A_*.zip``), by name."""
    folder = Path(folder)
    return sorted([*folder.glob("*.SAFE"), *folder.glob("S2?_MSIL2A_*.zip")])


class _Container:
    """A SAFE folder or a .zip of one, with GDAL paths for the files inside."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = None
        if path.suffix.lower() == ".zip":
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise InputError(path, f"not a readable zip archive ({e})") from None
            tops = {n.split("/", 1)[0] for n in self.zip.namelist() if n.endswith(".SAFE/MTD_MSIL2A.xml") or "/" in n}
            safes = sorted(t for t in tops if t.endswith(".SAFE"))
            if len(safes) != 1:
                raise InputError(path, f"zip must hold exactly one .SAFE folder, found {safes or 'none'}")
            self.root = safes[0]
        elif path.is_dir():
            self.root = ""
            if not (path / "MTD_MSIL2A.xml").exists():
                inside = [p.name for p in products_in(path)]
                if inside:
                    shown = ", ".join(inside[:3]) + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")
                    raise InputError(path, f"a folder of {len(inside)} product(s) ({shown}), not one product: "
                                           f"pass the products themselves, e.g. {path}/*.SAFE")
                raise InputError(path, "not a Level-2A product: no MTD_MSIL2A.xml in this folder")
        elif not path.exists():
            raise InputError(path, "no such file or folder")
        else:
            raise InputError(path, "neither a .SAFE folder nor a .zip of one")

    @property
    def safe_name(self) -> str:
        return (self.root or self.path.name).removesuffix(".SAFE")

    def read(self, rel: str) -> bytes:
        try:
            if self.zip is not None:
                return self.zip.read(f"{self.root}/{rel}")
            return (self.path / rel).read_bytes()
        except (KeyError, FileNotFoundError):
            raise InputError(self.display(rel), "file is missing from the product") from None

    def gdal_path(self, rel: str) -> str:
        if self.zip is not None:
            return f"/vsizip/{self.path}/{self.root}/{rel}"
        return str(self.path / rel)

    def display(self, rel: str) -> str:
        return f"{self.path}/{self.root}/{rel}" if self.zip is not None else str(self.path / rel)

    def glob_granule_mtd(self) -> list[str]:
        if self.zip is not None:
            pre = f"{self.root}/"
            return sorted(n[len(pre):] for n in self.zip.namelist()
                          if n.startswith(pre + "GRANULE/") and n.endswith("/MTD_TL.xml"))
        return sorted(str(p.relative_to(self.path)) for p in self.path.glob("GRANULE/*/MTD_TL.xml"))


def _number(text: str, source, what: str, kind=float, lo=None, hi=None, lo_open=False):
    """A numeric metadata field, checked for range: a bad one names the file and the field."""
    try:
        v = kind(text)
    except (TypeError, ValueError):
        raise InputError(source, f"{what} is {text!r}, not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(v):
        raise InputError(source, f"{what} is {text!r}, not a finite number")
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        span = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]"
        raise InputError(source, f"{what} is {text!r}, outside the valid range {span}")
    return v


def _parse_xml(data: bytes, source) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise InputError(source, f"malformed XML ({e})") from None


S2_TILE_M = 109_800  # a Sentinel-2 tile's side


def parse_tile_geocoding(root: ET.Element, source) -> TileGeocoding:
    geos = _find_all(root, "Tile_Geocoding")
    if not geos:
        raise InputError(source, "no Tile_Geocoding element")
    geo = geos[0]
    code = _find_text(geo, ("HORIZONTAL_CS_CODE",), source)
    m = re.fullmatch(r"EPSG:(\d+)", code)
    if not m:
        raise InputError(source, f"HORIZONTAL_CS_CODE {code!r} is not an EPSG code")
    sizes, positions = {}, {}
    for el in _find_all(geo, "Size"):
        res = _number(el.get("resolution", "0"), source, "Size resolution", int)
        # a tile is at most Sentinel-2's 109.8 km: a larger one declared would be decoded into tens of GB
        sizes[res] = tuple(_number(_find_text(el, (k,), source), source, f"{k} at {res} m", int, 1,
                                   S2_TILE_M // max(res, 10))
                           for k in ("NROWS", "NCOLS"))
    for el in _find_all(geo, "Geoposition"):
        res = _number(el.get("resolution", "0"), source, "Geoposition resolution", int)
        positions[res] = tuple(_number(_find_text(el, (k,), source), source, f"{k} at {res} m", float, -1e8, 1e8)
                               for k in ("ULX", "ULY"))
    if 10 not in sizes or 10 not in positions:
        raise InputError(source, "Tile_Geocoding lacks the 10 m Size or Geoposition")
    rows, cols = sizes[10]
    if rows != cols:
        raise InputError(source, f"tile is not square ({rows} x {cols} at 10 m)")
    if rows % 6:
        raise InputError(source, f"tile size {rows} px at 10 m is not divisible by 6 (20 m and 60 m grids)")
    return TileGeocoding(int(m.group(1)), positions[10][0], positions[10][1], rows)


def open_product(path) -> Product:
    """Parse a SAFE product's metadata and locate its bands; no pixel is read here."""
    path = Path(path)
    box = _Container(path)
    mtd = _parse_xml(box.read("MTD_MSIL2A.xml"), box.display("MTD_MSIL2A.xml"))
    src = box.display("MTD_MSIL2A.xml")

    uri = None
    for tag in ("PRODUCT_URI", "PRODUCT_URI_2A"):
        found = _find_all(mtd, tag)
        if found and found[0].text:
            uri = found[0].text.strip()
            break
    name = (uri or box.safe_name).removesuffix(".SAFE")
    m = _PRODUCT_RE.match(name)
    if not m:
        raise InputError(src, f"product name {name!r} does not follow the L2A naming convention")
    baseline = _find_text(mtd, ("PROCESSING_BASELINE",), src)

    files = [el.text.strip() for el in _find_all(mtd, "IMAGE_FILE") + _find_all(mtd, "IMAGE_FILE_2A") if el.text]
    band_paths = {}
    for band, res in NATIVE.items():
        pat = re.compile(rf"_{band}_{res}m$")
        hits = [f for f in files if pat.search(f)]
        if not hits:
            raise InputError(src, f"no IMAGE_FILE entry for band {band} at {res} m")
        band_paths[band] = box.gdal_path(hits[0] + ".jp2")

    quant = _number(_find_text(mtd, ("BOA_QUANTIFICATION_VALUE", "L2A_BOA_QUANTIFICATION_VALUE"), src), src,
                    "BOA_QUANTIFICATION_VALUE", float, 0, 1e6, lo_open=True)
    offsets = {b: 0.0 for b in NATIVE if b != "SCL"}
    for el in _find_all(mtd, "BOA_ADD_OFFSET"):
        idx = _number(el.get("band_id", "-1"), src, "BOA_ADD_OFFSET band_id", int, 0, len(BAND_IDS) - 1)
        if BAND_IDS[idx] in offsets:
            offsets[BAND_IDS[idx]] = _number(el.text, src, f"BOA_ADD_OFFSET of {BAND_IDS[idx]}", float, -10_000, 10_000)

    granules = box.glob_granule_mtd()
    if len(granules) != 1:
        raise InputError(box.display("GRANULE"), f"expected one granule MTD_TL.xml, found {len(granules)}")
    tl_src = box.display(granules[0])
    geocoding = parse_tile_geocoding(_parse_xml(box.read(granules[0]), tl_src), tl_src)
    quality = {}
    for el in _find_all(mtd, "Image_Content_QI")[:1]:
        for child in el:
            if _local(child.tag).endswith("_PERCENTAGE") and child.text:
                try:
                    quality[_local(child.tag)] = float(child.text)
                except ValueError:
                    pass  # informative only: a bad value is left out, never fatal
    for el in _find_all(mtd, "Cloud_Coverage_Assessment")[:1]:
        try:
            quality["CLOUD_COVERAGE_ASSESSMENT"] = float(el.text)
        except (TypeError, ValueError):
            pass
    return Product(path, name, m["mission"], m["datetime"], baseline, m["tile"], geocoding,
                   band_paths, quant, offsets, quality)


def open_band(product: Product, band: str):
    """Open one band file and check it against the tile geocoding; returns the rasterio dataset."""
    res = NATIVE[band]
    path = product.band_paths[band]
    geo = product.geocoding
    want = geo.size(res)
    try:
        ds = rasterio.open(path)
    except RasterioIOError as e:
        raise InputError(path, f"cannot decode ({e})") from None
    try:
        want_dtype = "uint8" if band == "SCL" else "uint16"  # as ESA writes them
        if ds.count != 1 or ds.dtypes[0] != want_dtype:
            raise InputError(path, f"expected one {want_dtype} band, found {ds.count} band(s) of {ds.dtypes}")
        if (ds.height, ds.width) != (want, want):
            raise InputError(path, f"raster is {ds.height} x {ds.width}, the tile geocoding says {want} x {want}")
        if ds.crs is None or ds.crs.to_epsg() != geo.epsg:
            raise InputError(path, f"CRS {ds.crs} does not match the tile's EPSG:{geo.epsg}")
        if not ds.transform.almost_equals(geo.transform(res)):
            raise InputError(path, f"geotransform {tuple(ds.transform)[:6]} does not match the tile geocoding")
    except BaseException:
        ds.close()
        raise
    return ds


def read_band(product: Product, band: str) -> np.ndarray:
    """Decode one band at its native resolution, checked against the tile geocoding."""
    with open_band(product, band) as ds:
        try:
            return ds.read(1)
        except RasterioIOError as e:
            raise InputError(product.band_paths[band], f"cannot decode ({e})") from None


def to_reflectance_dn(product: Product, band: str, dn: np.ndarray) -> np.ndarray:
    """Stored convention: reflectance x 10000 with the BOA add-offset removed, clipped at 0.

    The result is float32 so that resampling sees the unrounded values.
    """
    scale = 10000.0 / product.quantification
    out = dn.astype(np.float32)
    offset = product.offsets.get(band, 0.0)
    if offset:
        out += np.float32(offset)
    if scale != 1.0:
        out *= np.float32(scale)
    np.maximum(out, 0, out=out)
    return out


def native_uint16(product: Product, band: str, dn: np.ndarray) -> np.ndarray:
    """The stored uint16 values of native pixels: ``to_reflectance_dn`` rounded, done in integers
    when the conversion is an integer shift (always, for ESA products: quantification 10000)."""
    offset = product.offsets.get(band, 0.0)
    if product.quantification == 10000.0 and float(offset).is_integer() and offset <= 0:
        shift = np.uint16(-offset)
        return np.maximum(dn, shift) - shift if shift else dn.astype(np.uint16, copy=False)
    return np.clip(np.rint(to_reflectance_dn(product, band, dn)), 0, 65535).astype(np.uint16)
