"""BigEarthNet v2.0 (reBEN) as an input: the S2 patch folders, the reference maps and metadata.parquet.

Layout (as distributed)::

    <root>/metadata.parquet                                   one row per patch (screened ones apart)
    <root>/metadata_for_patches_with_snow_cloud_or_shadow.parquet   optional: the screened patches
    <root>/BigEarthNet-S2/<product>/<patch>/<patch>_<band>.tif      B01..B12, B8A (no B10), uint16
    <root>/Reference_Maps/<product>/<patch>/<patch>_reference_map.tif   CLC 2018 code per 10 m pixel

``<product>`` is e.g. ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP`` and ``<patch>`` is
``<product>_<x>_<y>`` on v1's grid. Labels: the 19 classes from the parquet (the official ones)
and the 43 CORINE classes recovered from the reference map (the codes present, a class counting
once it covers more than ``min_label_share`` of the patch), which no v2 tool offers; where the 43
mapped to 19 disagree with the parquet, the patch is counted in the manifest, never hidden.
Values are stored as the GeoTIFFs hold them: reflectance x 10000 with the offset already
removed, this package's one convention (a real T33UUP 2017-06-13 patch reads B02 min 35,
median ~440 in v2 as in v1).
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from bigearth import nomenclature as nom
from bigearth.errors import InputError
from bigearth.files import check_regular
from bigearth.record import BAND_RESOLUTION, PATCH_M, PATCH_PX

from .geotiff import read_raster
from .patch_ingest import PatchSource, georef, ingest, patch_files, read_bands, strays
from .tiles import REAL_TILES

S2_DIR, MAPS_DIR = "BigEarthNet-S2", "Reference_Maps"
METADATA, SCREENED = "metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
COLUMNS = ("patch_id", "labels", "split", "s1_name", "s2v1_name")
SPLIT_VALUES = {"train": "train", "validation": "validation", "test": "test"}
_PRODUCT_RE = re.compile(r"^(?P<mission>S2[ABCD])_MSIL2A_(?P<dt>\d{8}T\d{6})_N\d{4}_R\d{3}_(?P<tile>T\d{2}[A-Z]{3})$")
_KNOWN_CODES = frozenset(nom.CLC_CODES) | frozenset(nom.CLC_CODES_WITHOUT_CLASS)
_PATCH_RE = re.compile(r"^(?P<product>S2[ABCD]_MSIL2A_\d{8}T\d{6}_N\d{4}_R\d{3}_T\d{2}[A-Z]{3})_(?P<x>\d+)_(?P<y>\d+)$")


def is_v2_root(path: Path) -> bool:
    """A folder holding ``BigEarthNet-S2/`` (metadata.parquet is checked when read)."""
    return Path(path).is_dir() and (Path(path) / S2_DIR).is_dir()


def read_metadata(root: Path) -> tuple[dict[str, dict], dict[str, dict], dict[str, str]]:
    """(kept rows, screened rows, ambiguous patches) by patch id, from the two parquet files. A
    patch listed more than once (twice in one table, or in both) is ambiguous, with the reason:
    which row holds would decide its split and labels, so none does."""
    root = Path(root)
    path = root / METADATA
    if not path.exists():
        raise InputError(path, f"not found (a BigEarthNet v2 folder holds {S2_DIR}/ and {METADATA})")
    st = check_regular(path).stat()
    kept, dups = _read_table(str(path), st.st_size, st.st_mtime_ns)
    screened, sdups = {}, {}
    spath = root / SCREENED
    if spath.exists():
        s2 = check_regular(spath).stat()
        screened, sdups = _read_table(str(spath), s2.st_size, s2.st_mtime_ns)
    ambiguous = {pid: f"{path}: {why}" for pid, why in dups.items()}
    ambiguous.update({pid: f"{spath}: {why}" for pid, why in sdups.items()})
    for pid in sorted(set(kept) & set(screened)):
        ambiguous.setdefault(pid, f"{path}: patch {pid} is listed here and in {SCREENED} (kept and screened out at once)")
    kept = {k: v for k, v in kept.items() if k not in ambiguous}
    screened = {k: v for k, v in screened.items() if k not in ambiguous}
    return kept, screened, ambiguous


# the parquet columns this reader uses and the Arrow types it reads them as
_TYPES = {"patch_id": "string", "labels": "list of strings", "split": "string", "s1_name": "string",
          "s2v1_name": "string", "contains_seasonal_snow": "boolean"}


def _type_ok(name: str, t) -> bool:
    import pyarrow as pa
    text = lambda x: pa.types.is_string(x) or pa.types.is_large_string(x)  # noqa: E731
    if name == "labels":
        return (pa.types.is_list(t) or pa.types.is_large_list(t)) and text(t.value_type)
    if name == "contains_seasonal_snow":
        return pa.types.is_boolean(t)
    return text(t) or pa.types.is_null(t)


# What a metadata table can be: v2 lists 549,488 patches in ~150 MB of decoded columns; ten times
# as many rows, or 1 GiB decoded, is not BigEarthNet and is refused from the footer, unread
PARQUET_MAX_ROWS = 5_000_000
PARQUET_MAX_BYTES = 1 << 30


@lru_cache(maxsize=4)
def _read_table(path_str: str, size: int, mtime_ns: int) -> tuple[dict[str, dict], dict[str, str]]:
    """(rows by patch id, {patch id listed more than once: why}); every column this reader uses
    checked for its type, so that a ``labels`` column of strings is named, not read letter by letter."""
    import pyarrow.parquet as pq
    path = Path(path_str)
    try:
        meta = pq.ParquetFile(path).metadata  # the footer only: what the table declares, before it is read
        declared = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise InputError(path, f"cannot read as parquet ({e})") from None
    if meta.num_rows > PARQUET_MAX_ROWS or declared > PARQUET_MAX_BYTES:
        raise InputError(path, f"declares {meta.num_rows:,} rows in {declared:,} bytes, more than a BigEarthNet v2 "
                               f"table can be ({PARQUET_MAX_ROWS:,} rows, {PARQUET_MAX_BYTES:,} bytes): not read")
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise InputError(path, f"cannot read as parquet ({e})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(path, f"has no column(s) {', '.join(missing)} (found {', '.join(table.column_names)})")
    for name, want in _TYPES.items():
        if name in table.column_names and not _type_ok(name, table.schema.field(name).type):
            raise InputError(path, f"column {name!r} is of type {table.schema.field(name).type}, expected {want}")
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    rows, where, unnamed = {}, {}, {}
    for i, pid in enumerate(cols["patch_id"]):
        if pid is None or not str(pid).strip():
            # one row, not the table: its patch (if any) is then in no table, and named so
            unnamed[f"{path.name} row {i}"] = f"row {i}: patch_id is empty; the row is left out, the others are read"
            continue
        rows[pid] = {c: cols[c][i] for c in cols}
        where.setdefault(pid, []).append(i)
    dups = {}
    for pid, idx in where.items():
        if len(idx) > 1 and all({c: cols[c][i] for c in cols} == rows[pid] for i in idx):
            continue  # the same row repeated: nothing to choose between (the patch is built once)
        if len(idx) > 1:
            splits = sorted({str(cols["split"][i]) for i in idx}) if "split" in cols else []
            dups[pid] = (f"patch {pid} is listed {len(idx)} times (rows {', '.join(map(str, idx))}"
                         + (f"; splits {', '.join(splits)}" if splits else "") + "): which row holds is ambiguous")
    dups.update(unnamed)  # failed alone, as the rows they are (issue 34: one null patch_id failed the folder)
    return rows, dups


READ_AT_ROOT = (S2_DIR, MAPS_DIR, METADATA, SCREENED)


def group_by_product(root: Path) -> tuple[dict[str, list[Path]], dict[str, str], dict[str, dict], dict[str, str]]:
    """Patch folders grouped by product (the unit Algorithm 1 deals); the patches that cannot be
    used ({patch id: error}: on disk but in neither parquet, listed but missing on disk, listed
    twice); per product the screened patches by reason (``snow_list``, ``cloud_list``); and
    every other entry the builder sees and does not use ({path: why}), for the manifest."""
    root = Path(root)
    kept, screened, ambiguous = read_metadata(root)
    groups: dict[str, list[Path]] = defaultdict(list)
    failed: dict[str, str] = dict(ambiguous)
    drops: dict[str, dict] = defaultdict(lambda: {"snow_list": 0, "cloud_list": 0})
    ignored = {str(p): f"not read: a BigEarthNet v2 folder is read through {', '.join(READ_AT_ROOT)}"
               for p in sorted(root.iterdir()) if p.name not in READ_AT_ROOT}
    seen = set()
    with os.scandir(root / S2_DIR) as products:
        for prod in sorted(products, key=lambda e: e.name):
            if not prod.is_dir():
                ignored[prod.path] = f"a file in {S2_DIR}/, which holds one folder per product"
                continue
            with os.scandir(prod.path) as patches:
                for e in sorted(patches, key=lambda e: e.name):
                    if not e.is_dir():
                        ignored[e.path] = "a file in a product folder, which holds one folder per patch"
                        continue
                    seen.add(e.name)
                    if e.name in ambiguous:
                        continue
                    if e.name in kept:
                        groups[prod.name].append(Path(e.path))
                    elif e.name in screened:
                        snow = bool(screened[e.name].get("contains_seasonal_snow"))
                        drops[prod.name]["snow_list" if snow else "cloud_list"] += 1
                    else:
                        failed[e.name] = f"{e.path}: patch folder is in neither {METADATA} nor {SCREENED}"
    for pid in sorted(set(kept) - seen):
        m = _PATCH_RE.match(pid)
        where = root / S2_DIR / (m["product"] if m else "?") / pid
        failed[pid] = f"{root / METADATA}: lists patch {pid}, but {where} is missing"
    return dict(groups), failed, {k: dict(v) for k, v in drops.items()}, ignored


def labels_19(row: dict, source) -> np.ndarray:
    vec = np.zeros(nom.NUM_CLASSES_19, np.uint8)
    for name in row.get("labels") or []:
        try:
            vec[nom.CLASS_NAMES_19.index(name)] = 1
        except ValueError:
            raise InputError(source, f"patch {row['patch_id']}: unknown 19-class label {name!r}") from None
    return vec


def labels_43(ref_map: Path, min_share: float = 0.0) -> np.ndarray:
    """The CORINE classes of a patch from its reference map: a class counts when its pixels
    are more than ``min_share`` of the patch (0: any pixel). Codes without a class (335, 99x)
    are ignored; a code outside CLC is an error naming the map."""
    codes = read_raster(ref_map, "reference map").array
    if codes.shape != (PATCH_PX, PATCH_PX):
        raise InputError(ref_map, f"reference map is {codes.shape[0]} x {codes.shape[1]}, expected {PATCH_PX} x {PATCH_PX}")
    flat = codes.ravel()
    # CLC level-3 codes have three digits; checked before counting, so the count can be a bincount
    # (np.unique sorted the 14,400 pixels and cost as much as reading the map)
    if codes.dtype.kind not in "ui" or (flat.size and (int(flat.min()) < 0 or int(flat.max()) > 999)):
        bad = sorted({v.item() for v in np.unique(flat) if not (codes.dtype.kind in "ui" and 0 <= v <= 999)})
        raise InputError(ref_map, f"code(s) {bad[:10]} are not CORINE Land Cover level-3 codes")
    counts = np.bincount(flat, minlength=1000)
    values = np.flatnonzero(counts)
    counts = counts[values]
    bad = [int(v) for v in values if int(v) not in _KNOWN_CODES]
    if bad:
        raise InputError(ref_map, f"code(s) {bad} are not CORINE Land Cover level-3 codes")
    share = counts / codes.size
    return nom.multi_hot_from_codes([int(v) for v, s in zip(values, share) if s > min_share], str(ref_map))


def read_patch(folder: Path, row: dict, root: Path, min_share: float = 0.0) -> dict:
    """One v2 patch: bands (checked), both label sets, names and georeference."""
    pid = folder.name
    m = _PATCH_RE.match(pid)
    if not m:
        raise InputError(folder, "folder name is not a BigEarthNet v2 patch id (<product>_<x>_<y>)")
    bands, crs, transforms = read_bands(folder, pid)
    ref_map = root / MAPS_DIR / m["product"] / pid / f"{pid}_reference_map.tif"
    c43 = labels_43(ref_map, min_share)
    c19 = labels_19(row, root / METADATA)
    split = SPLIT_VALUES.get(str(row.get("split")))
    if split is None:
        raise InputError(root / METADATA, f"patch {pid}: split {row.get('split')!r} is not one of {sorted(SPLIT_VALUES)}")
    pm = _PRODUCT_RE.match(m["product"])
    ulx, uly = check_grid(folder, pid, pm["tile"], int(m["x"]), int(m["y"]), transforms)
    return {"name": pid, "product": m["product"], "tile": pm["tile"], "x": int(m["x"]), "y": int(m["y"]),
            "date": product_time(pm),
            "crs": f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else str(crs), "split": split,
            "bounds": [float(ulx), float(uly), float(ulx + PATCH_M), float(uly - PATCH_M)],
            "bands": bands, "classes": c43, "classes_19": c19,
            "v1_name": str(row.get("s2v1_name") or ""), "s1_name": str(row.get("s1_name") or "")}


def product_time(pm: re.Match) -> str:
    """The acquisition time of a v2 product name (a ``_PRODUCT_RE`` match), ISO 8601 as written."""
    d = pm["dt"]
    return f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[9:11]}:{d[11:13]}:{d[13:15]}"


def known_corner(tile: str, x: int, y: int) -> tuple[float, float] | None:
    """Patch (x, y)'s upper-left corner on a tile whose grid is known (v1's grid), else None."""
    if tile not in REAL_TILES:
        return None
    tx, ty = REAL_TILES[tile][1:]
    return tx + x * PATCH_M, ty - y * PATCH_M


def check_grid(folder: Path, pid: str, tile: str, x: int, y: int, transforms: dict) -> tuple[float, float]:
    """The patch's corner, with every band on its grid there, as v1 checks against its label
    JSON: on a tile whose grid is known (v1's grid: x = (ulx - tile ulx) / 1200, y = (tile uly -
    uly) / 1200) the corner is patch (x, y)'s; elsewhere B02's corner, which the other bands must
    share. A band shifted by any amount is an InputError naming its file."""
    t = transforms["B02"]
    corner = known_corner(tile, x, y)
    if corner is not None:
        (ulx, uly), whence = corner, f"patch ({x}, {y}) of tile {tile}'s grid"
    else:
        ulx, uly, whence = t.c, t.f, f"B02's corner ({t.c:g}, {t.f:g})"
    for band, t in transforms.items():
        res = BAND_RESOLUTION[band]
        expect = (float(res), 0.0, float(ulx), 0.0, -float(res), float(uly))
        if any(abs(a - b) > 1e-6 for a, b in zip(tuple(t)[:6], expect)):
            raise InputError(folder / f"{pid}_{band}.tif", f"geotransform {tuple(t)[:6]} is not the {res} m grid at "
                                                           f"{whence}, corner ({ulx:g}, {uly:g})")
    return ulx, uly


def _xy(folder: Path) -> tuple[int, int]:
    m = _PATCH_RE.match(folder.name)
    return (int(m["x"]), int(m["y"])) if m else (-1, -1)


def process_product(task_id: str, folders: list[Path], cfg, part_path: Path, progress=None,
                    screened: dict | None = None) -> dict:
    """One v2 product's patches into a part file (``patch_ingest.ingest``), labelled with both
    nomenclatures; the 43 classes recovered from the maps, mapped to 19, are counted against the
    parquet's 19 (``label_check``)."""
    root = Path(folders[0]).parents[2]
    rows, screened_rows, _ = read_metadata(root)
    share = cfg.min_label_share
    check = {"patches": 0, "disagree": 0, "by_class_19": {}}

    def meta(p: dict) -> dict:
        diff = np.flatnonzero(nom.to_19(p["classes"]) != p["classes_19"])
        check["patches"] += 1
        if len(diff):
            check["disagree"] += 1
            for j in diff:
                name = nom.CLASS_NAMES_19[j]
                check["by_class_19"][name] = check["by_class_19"].get(name, 0) + 1
        return {k: p[k] for k in ("name", "product", "tile", "date", "split", "crs", "x", "y", "bounds", "v1_name",
                                  "s1_name")}

    def stray_entries(folder: Path) -> dict:
        out = strays(folder, patch_files(folder.name, labels_json=False))
        ref = root / MAPS_DIR / folder.parent.name / folder.name
        return {**out, **strays(ref, {f"{folder.name}_reference_map.tif"})} if ref.is_dir() else out

    def describe(folder: Path):
        """A patch not read (screened, failed, no labels): its name and its parquet row."""
        pid = folder.name
        m = _PATCH_RE.match(pid)
        pm = _PRODUCT_RE.match(m["product"])
        row = rows.get(pid) or screened_rows.get(pid) or {}
        c19 = labels_19(row, root / METADATA) if row.get("labels") is not None else None
        x, y = int(m["x"]), int(m["y"])
        geo = georef(folder / f"{pid}_B02.tif")
        corner = known_corner(pm["tile"], x, y)
        if corner is not None:  # on a known grid the name places the patch, as check_grid does
            geo["bounds"] = [corner[0], corner[1], corner[0] + PATCH_M, corner[1] - PATCH_M]
        return ({"name": pid, "product": m["product"], "tile": pm["tile"], "x": x, "y": y,
                 "date": product_time(pm),
                 "split": SPLIT_VALUES.get(str(row.get("split"))), **geo}, None, c19)

    # the patches of this product that the screened table lists: in the catalogue with their reason
    unread = [(root / S2_DIR / task_id / pid, "snow_list" if r.get("contains_seasonal_snow") else "cloud_list")
              for pid, r in sorted(screened_rows.items())
              if pid.startswith(task_id + "_") and (root / S2_DIR / task_id / pid).is_dir()]  # as planning counts them
    source = PatchSource(
        xy=_xy, read=lambda f: read_patch(f, rows[f.name], root, share), meta=meta, strays=stray_entries,
        describe=describe,
        # no labels in the parquet or the map teach nothing
        labels=lambda p: (p["classes"], p["classes_19"]) if p["classes"].any() and p["classes_19"].any() else None)
    res = ingest(source, folders, cfg, part_path, progress, drops=dict(screened or {"snow_list": 0, "cloud_list": 0}),
                 unread=unread)
    return {**res, "label_check": check}
