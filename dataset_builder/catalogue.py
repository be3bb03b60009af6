"""The build's catalogue: one row per grid patch a build considered, kept or not, as GeoParquet
(``patches.parquet`` beside the archive), so that a GIS or a data-frame tool finds the patches by
place, time, label and status without reading the archive.

Each task collects its rows as it screens (``Rows``: columnar, JSON-safe, so they travel in the
task's result and its resume marker); ``write`` turns them into a GeoDataFrame whose geometry is
each patch's footprint reprojected to EPSG:4326 (its native CRS and bounds kept as columns) and
writes GeoParquet 1.1 with a ``bbox`` covering column, which DuckDB and pyarrow filter by without
a spatial extension.
"""
from __future__ import annotations

import datetime
import re
from pathlib import Path

import numpy as np

from bigearth import nomenclature as nom
from bigearth.files import atomic_path, sha256_file

CATALOGUE_NAME = "patches.parquet"
KEPT = "kept"
FAILED = "failed"
FIELDS = ("name", "product", "tile", "date", "split", "status", "error", "x", "y", "classes", "classes_19",
          "crs", "bounds")
# the patch meta a row takes (the archive's own record fields)
META_FIELDS = ("name", "product", "tile", "date", "split", "x", "y", "crs", "bounds")


def bits(multi_hot) -> int:
    """A multi-hot vector as an integer (bit i: class i): 43 labels in one JSON number."""
    return sum(1 << int(i) for i in np.flatnonzero(np.asarray(multi_hot)))


def names_of_bits(b: int | None, names) -> list[str] | None:
    return None if b is None else [n for i, n in enumerate(names) if b >> i & 1]


class Rows:
    """One task's rows, column by column."""

    def __init__(self) -> None:
        self.cols: dict[str, list] = {k: [] for k in FIELDS}

    def add(self, meta: dict, status: str, classes=None, classes_19=None, error: str = "") -> None:
        """A patch: ``meta`` with the record's fields (``None`` for what is not known, as the
        georeference of a patch whose files cannot be read); ``classes`` multi-hot (43) or None
        when not known; ``classes_19`` defaults to its mapping from ``classes``."""
        for k in META_FIELDS:
            v = meta.get(k)
            self.cols[k].append([float(c) for c in v] if k == "bounds" and v is not None else v)
        if classes_19 is None and classes is not None:
            classes_19 = nom.to_19(np.asarray(classes))
        self.cols["status"].append(status)
        self.cols["error"].append(error)
        self.cols["classes"].append(None if classes is None else bits(classes))
        self.cols["classes_19"].append(None if classes_19 is None else bits(classes_19))

    def to_json(self) -> dict:
        return self.cols


_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{1,2}):(\d{1,2}):(\d{1,2}))?")


def timestamp(text: str | None):
    """An acquisition time as a datetime (None when not known), its clock read as a count: real
    BigEarthNet names hold times such as ``T094161`` (61 seconds), one minute and one second
    after 09:41, which strict ISO 8601 parsers refuse."""
    m = _DATE.match(text or "")
    if not m:
        return None
    y, mo, d, h, mi, sec = (int(v or 0) for v in m.groups())
    try:
        return datetime.datetime(y, mo, d) + datetime.timedelta(hours=h, minutes=mi, seconds=sec)
    except ValueError:
        return None


def frame(catalogues: list[dict]):
    """The rows of every task (``Rows.to_json()`` each, in build order) as a GeoDataFrame in
    EPSG:4326."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    cols = {k: [v for c in catalogues for v in c[k]] for k in FIELDS}
    n = len(cols["name"])
    geometry = np.full(n, None, dtype=object)
    crs = np.asarray(cols["crs"], dtype=object)
    bounds = cols["bounds"]
    for code in sorted({c for c in cols["crs"] if c}):
        idx = np.flatnonzero((crs == code) & np.array([b is not None for b in bounds]))
        b = np.asarray([bounds[i] for i in idx], np.float64).reshape(-1, 4)  # ulx, uly, lrx, lry
        boxes = shapely.box(b[:, 0], b[:, 3], b[:, 2], b[:, 1])
        geometry[idx] = gpd.GeoSeries(boxes, crs=code).to_crs(4326).to_numpy()
    df = pd.DataFrame({
        "name": pd.array(cols["name"], dtype="string"),
        "product": pd.array(cols["product"], dtype="string"),
        "tile": pd.array(cols["tile"], dtype="string"),
        "date": pd.Series([timestamp(d) for d in cols["date"]], dtype="datetime64[ms]"),
        "split": pd.array(cols["split"], dtype="string"),
        "status": pd.array(cols["status"], dtype="string"),
        "error": pd.array(cols["error"], dtype="string"),
        "x": pd.array(cols["x"], dtype="Int32"),
        "y": pd.array(cols["y"], dtype="Int32"),
        "labels": [names_of_bits(b, nom.CLASS_NAMES) for b in cols["classes"]],
        "labels_19": [names_of_bits(b, nom.CLASS_NAMES_19) for b in cols["classes_19"]],
        "crs": pd.array(cols["crs"], dtype="string"),
        "bounds": [None if b is None else list(b) for b in bounds],
    })
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geometry, crs=4326), crs=4326)


def write(path, catalogues: list[dict]) -> dict:
    """Write the catalogue atomically; returns ``{"rows", "sha256"}``."""
    gdf = frame(catalogues)
    path = Path(path)
    with atomic_path(path) as tmp:
        # GeoParquet 1.1: the bbox column lets readers without a geometry engine filter by place
        gdf.to_parquet(tmp, index=False, schema_version="1.1.0", write_covering_bbox=True, compression="zstd")
    return {"rows": len(gdf), "sha256": sha256_file(path)}

