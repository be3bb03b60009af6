"""Patch labels: from a CORINE Land Cover raster (any CRS) or from BigEarthNet label JSONs."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from bigearth import nomenclature as nom
from bigearth.errors import InputError
from bigearth.files import content_digest, read_json, special_kind
from bigearth.nomenclature import UnknownClassError
from bigearth.record import PATCH_M


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")
_NONE = nom.NUM_CLASSES  # index for "no class here" (no data, glaciers, unclassified)


def _code_lut(values: str) -> np.ndarray:
    """Raster value -> class index (0..42), _NONE for no class, -1 for an unknown value."""
    lut = np.full(65536, -1, np.int16)
    if values == "grid":
        lut[list(nom.CLC_GRID_NODATA)] = _NONE
        for g, code in enumerate(nom.CLC_44_CODES, start=1):
            lut[g] = nom.CLC_CODES.index(code) if code in nom.CLC_CODES else _NONE
    else:
        lut[0] = _NONE
        lut[list(nom.CLC_CODES_WITHOUT_CLASS)] = _NONE
        for i, code in enumerate(nom.CLC_CODES):
            lut[code] = i
    return lut


class ClcLabeler:
    """Labels patches of a tile from CORINE rasters, reprojected (nearest) onto the tile grid.

    ``values`` says how the raster stores classes: ``codes`` (111..523), ``grid`` (the official
    CLC raster's 1..44) or ``auto`` (grid when the raster is uint8).
    """

    def __init__(self, paths, res: int = 20, values: str = "auto"):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no CORINE raster given")
        self.res = res
        self.values = values

    def _source_for(self, crs: str, bounds) -> Path:
        """The one raster that covers ``bounds``. A raster that cannot be opened is passed over (it
        may cover other tiles only); it is named when no readable raster covers the tile. Two
        rasters over one tile are refused for that tile: which one labels it would otherwise
        depend on the order the files were given in."""
        unreadable, covering, touching = [], [], []
        for p in self.paths:
            try:
                with rasterio.open(p) as ds:
                    if ds.crs is None:
                        unreadable.append(f"{p}: has no CRS")
                        continue
                    if ds.count < 1 or not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
                        unreadable.append(f"{p}: holds {ds.dtypes[0] if ds.count else 'no'} values, not integer class codes")
                        continue
                    l, b, r, t = transform_bounds(crs, ds.crs, *bounds)
                    e = ds.bounds
                    if l >= e.left - 1e-6 and r <= e.right + 1e-6 and b >= e.bottom - 1e-6 and t <= e.top + 1e-6:
                        covering.append(p)
                    elif l < e.right and r > e.left and b < e.top and t > e.bottom:  # shares more than an edge
                        touching.append(p)
            except (RasterioError, OSError, ValueError) as e:
                unreadable.append(f"{p}: cannot open CORINE raster ({str(e).splitlines()[0][:200]})")
        where = tuple(round(v) for v in bounds)
        if len(covering) == 1 and not touching:
            return covering[0]
        if len(covering) + len(touching) > 1:
            both = [*covering, *touching]
            raise InputError(both[0], f"{len(both)} CORINE rasters overlap the tile bounds {where} in {crs} "
                                      f"({', '.join(str(q) for q in both)}): its labels would depend on which one is "
                                      f"read; give one raster per tile (--clc), e.g. a mosaic of them")
        if unreadable:
            raise InputError(unreadable[0].split(": ", 1)[0],
                             f"{unreadable[0].split(': ', 1)[1]}; no readable CORINE raster covers the tile bounds "
                             f"{where} in {crs}" + (f" ({len(unreadable) - 1} more unreadable)" if len(unreadable) > 1 else ""))
        passed = self._passed_over()
        if passed:  # the raster meant for this tile is likely the one that could not be read
            raise InputError(passed[0][0], f"is {passed[0][1]}, not a regular file: not read as a CORINE raster, and "
                                           f"none of the {len(self.paths)} read covers the tile bounds {where} in {crs}")
        raise InputError(self.paths[0] if len(self.paths) == 1 else self.paths[0].parent,
                         f"no CORINE raster covers the tile bounds {where} in {crs}"
                         + (f" ({touching[0]} covers part of it)" if touching else ""))

    def _passed_over(self) -> list[tuple[Path, str]]:
        """(path, what it is) of the ``*.tif`` beside the rasters that are not files (a FIFO, a
        socket): a --clc folder's listing passes over them (``bigearth_cli.configs.expand_clc``)."""
        out = []
        for folder in dict.fromkeys(p.parent for p in self.paths):
            for q in sorted(folder.glob("*.tif")):
                if q not in self.paths and (kind := special_kind(q)):
                    out.append((q, kind))
        return out

    def tile_classes(self, crs: str, ulx: float, uly: float, size_m: int) -> tuple[np.ndarray, Path]:
        """Class index (0..43) on the tile's grid at ``self.res`` m."""
        bounds = (ulx, uly - size_m, ulx + size_m, uly)
        src_path = self._source_for(crs, bounds)
        n = size_m // self.res
        transform = rasterio.transform.from_origin(ulx, uly, self.res, self.res)
        try:
            with rasterio.open(src_path) as src:
                values = self.values
                if values == "auto":
                    values = "grid" if src.dtypes[0] == "uint8" else "codes"
                with WarpedVRT(src, crs=crs, transform=transform, width=n, height=n,
                               resampling=Resampling.nearest, src_nodata=src.nodata or 0, nodata=0) as vrt:
                    raw = vrt.read(1)
        except (RasterioError, OSError) as e:  # a truncated or damaged raster fails here, not when opened
            raise InputError(src_path, f"cannot read CORINE raster ({str(e).splitlines()[0][:200]})") from None
        idx = _code_lut(values)[raw.astype(np.uint16)]
        if (idx < 0).any():
            bad = sorted(set(raw[idx < 0].tolist()))[:5]
            raise InputError(src_path, f"unknown CORINE value(s) {bad} (read as {values})")
        return idx.astype(np.uint8), src_path

    @staticmethod
    def strip_classes(idx_strip: np.ndarray, ncols: int) -> np.ndarray:
        """(ncols, 43) multi-hot for a strip of patches of the class-index grid."""
        rows, width = idx_strip.shape
        w = width // ncols
        blocks = idx_strip[:, : ncols * w].reshape(rows, ncols, w)
        present = np.zeros((ncols, nom.NUM_CLASSES + 1), np.uint8)
        col = np.broadcast_to(np.arange(ncols)[None, :, None], blocks.shape)
        present[col.ravel(), blocks.ravel()] = 1
        return present[:, : nom.NUM_CLASSES]


# What a label JSON can be: real ones are 1-2 kB and two levels deep (43 class names and a WKT
# projection fit in 8 kB); a larger or deeper file is refused before it is parsed
LABEL_JSON_MAX_BYTES = 64 << 10
LABEL_JSON_MAX_DEPTH = 4


def read_label_json(path) -> dict:
    """A BigEarthNet ``_labels_metadata.json``: labels (validated), coordinates, projection, source."""
    path = Path(path)
    meta = read_json(path, "label JSON", max_bytes=LABEL_JSON_MAX_BYTES, max_depth=LABEL_JSON_MAX_DEPTH)
    for key in ("labels", "coordinates", "projection", "tile_source", "acquisition_date"):
        if key not in meta:
            raise InputError(path, f"label JSON has no {key!r}")
    if not isinstance(meta["labels"], list) or not all(isinstance(v, str) for v in meta["labels"]):
        raise InputError(path, "'labels' must be a list of class names")
    coords = meta["coordinates"]
    if not isinstance(coords, dict) or not all(k in coords for k in ("ulx", "uly", "lrx", "lry")):
        raise InputError(path, "'coordinates' must have ulx, uly, lrx, lry")
    if not all(isinstance(coords[k], (int, float)) and not isinstance(coords[k], bool) and np.isfinite(coords[k])
               for k in ("ulx", "uly", "lrx", "lry")):
        raise InputError(path, f"'coordinates' must be numbers, got {coords}")
    if (coords["lrx"] - coords["ulx"], coords["uly"] - coords["lry"]) != (PATCH_M, PATCH_M):
        raise InputError(path, f"'coordinates' {coords} do not span one {PATCH_M} m patch")
    if not isinstance(meta["tile_source"], str) or not isinstance(meta["acquisition_date"], str):
        raise InputError(path, "'tile_source' and 'acquisition_date' must be strings")
    if not _DATE_RE.match(meta["acquisition_date"]):
        raise InputError(path, f"'acquisition_date' {meta['acquisition_date']!r} is not YYYY-MM-DD HH:MM:SS")
    try:
        meta["classes"] = nom.multi_hot_from_names(meta["labels"], str(path))
    except UnknownClassError as e:
        raise InputError(path, str(e).replace(f" in {path}", "")) from None
    return meta


class JsonLabeler:
    """Labels patches of products from BigEarthNet label JSONs found by patch name, in
    ``<root>/<name>/<name>_labels_metadata.json`` (the archive's layout) or
    ``<root>/<name>_labels_metadata.json``. A patch without a JSON has no labels."""

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(self.root, "label JSON folder does not exist")

    def path(self, name: str) -> Path | None:
        for p in (self.root / name / f"{name}_labels_metadata.json", self.root / f"{name}_labels_metadata.json"):
            if p.exists():
                return p
        return None

    def digest(self, prefix: str) -> str:
        """Content digest of the label JSONs of one product's patches (names starting ``prefix_``):
        what its part depends on besides the product."""
        h = hashlib.sha256()
        for p in sorted(self.root.glob(f"{prefix}_*")):
            for f in [p] if p.is_file() else sorted(p.glob("*_labels_metadata.json")):
                if f.name.endswith("_labels_metadata.json"):
                    h.update(f"{f.relative_to(self.root).as_posix()}\0{content_digest(f)}\n".encode())
        return h.hexdigest()

    def strip_classes(self, prefix: str, y: int, ncols: int, bounds_of=None) -> np.ndarray:
        """(ncols, 43) multi-hot for patch row ``y``; checks each JSON's coordinates when
        ``bounds_of(x)`` is given, so labels never land on the wrong patch."""
        out = np.zeros((ncols, nom.NUM_CLASSES), np.uint8)
        for x in range(ncols):
            p = self.path(f"{prefix}_{x}_{y}")
            if p is None:
                continue
            meta = read_label_json(p)
            if bounds_of is not None:
                c = meta["coordinates"]
                got = [float(c[k]) for k in ("ulx", "uly", "lrx", "lry")]
                if got != list(bounds_of(x)):
                    raise InputError(p, f"coordinates {got} are not those of patch ({x}, {y}): {list(bounds_of(x))}")
            out[x] = meta["classes"]
        return out
