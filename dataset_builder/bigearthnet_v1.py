"""The BigEarthNet-S2 v1.0 archive as an input: patch folders of 12 GeoTIFFs + label JSON.

``data_10m/20m/60m`` come straight from the GeoTIFFs; ``data_super`` is computed per patch
(the archive has no tile around the patch: the method's halo is filled from the adjacent patches
of the same tile_source where they exist, and with the patch's mirrored edges elsewhere, which
for bilinear is the same as clamping and gives a network mirrored context rather than zeros).
The official snow/cloud lists drop patches and the official lists give each patch its split.
"""
from __future__ import annotations

import bz2
import os
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path


from bigearth import nomenclature as nom
from bigearth.errors import InputError
from bigearth.record import BAND_RESOLUTION, PATCH_M

from .labels import read_label_json
from .patch_ingest import PatchSource, georef, ingest, patch_files, read_bands, strays
from .tiles import REAL_TILES

_NAME_RE = re.compile(r"^(?P<prefix>S2[AB]_MSIL2A_\d{8}T\d{5,6})_(?P<x>\d+)_(?P<y>\d+)$")
_TILE_RE = re.compile(r"_(T\d{2}[A-Z]{3})_")
# a tile_source product name: real v1 names their Level-1C product (the patches were cut from its
# Sen2Cor output), S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_20170613T101608; an L2A one is taken too
_SOURCE_RE = re.compile(r"^(?P<mission>S2[AB])_MSIL(?:1C|2A)_(?P<when>\d{8}T\d{5,6})_")
LIST_FILES = {"snow": "patches_with_seasonal_snow", "cloud": "patches_with_cloud_and_shadow",
              "train": "train", "validation": "val", "test": "test"}


def is_archive_dir(path: Path) -> bool:
    """A folder of BigEarthNet patch folders (or one patch folder)."""
    if not path.is_dir() or path.suffix == ".SAFE":
        return False
    if any(path.glob("*_labels_metadata.json")):
        return True
    return any(p.is_dir() and _NAME_RE.match(p.name) for p in path.iterdir())


def patch_folders(path: Path) -> list[Path]:
    return scan(path)[0]


def _looks_like_a_patch(folder: Path) -> str | None:
    """What makes a folder look like a patch folder whatever its name (a label JSON, a band)."""
    for pattern in ("*_labels_metadata.json", "*_B02.tif"):
        hit = next(folder.glob(pattern), None)
        if hit is not None:
            return hit.name
    return None


def scan(path: Path) -> tuple[list[Path], dict[str, str], dict[str, str]]:
    """What a v1 archive folder holds: (patch folders, {name: error} for folders that hold a
    patch's files under a name that is not BigEarthNet's, {path: why} for every other entry).
    Nothing the builder sees is passed over without a trace: the first are built, the second
    fail as inputs, the third are listed in the manifest as ignored."""
    path = Path(path)
    if any(path.glob("*_labels_metadata.json")):
        return [path], {}, {}
    folders, failed, ignored = [], {}, {}
    # scandir: the entry's type comes with the listing, no stat per entry (590k folders in v1)
    with os.scandir(path) as entries:
        for e in sorted(entries, key=lambda e: e.name):
            p = Path(e.path)
            if e.is_dir() and _NAME_RE.match(e.name):
                folders.append(p)
            elif e.is_dir() and (hit := _looks_like_a_patch(p)) is not None:
                failed[e.name] = (f"{p}: holds a patch's files ({hit}), but its name is not a BigEarthNet patch name "
                                  f"(<S2A|S2B>_MSIL2A_<date>T<time>_<x>_<y>): not built")
            else:
                ignored[str(p)] = ("a folder without patch files, not a BigEarthNet patch folder" if e.is_dir()
                                   else "a file beside the patch folders, not one of them")
    return folders, failed, ignored


def group_by_tile_source(path: Path, labels: bool = True) -> tuple[dict[str, list[Path]], dict[str, str], dict[str, str]]:
    """Patch folders grouped by their ``tile_source`` product (the unit Algorithm 1 deals); the
    patches that cannot be used ({patch name: error}: a label JSON that cannot be read, a patch
    folder misnamed), recorded as failed inputs while the others go on; and the entries that are
    not patches ({path: why}, ``scan``).

    ``labels=False`` (a plan, ``build --dry-run``) reads no label JSON and groups by the
    acquisition in the folders' names instead: the listing alone, seconds for 590k folders
    where reading every JSON takes minutes. One acquisition can span several tile sources, so
    the groups are coarser; the counts are the same."""
    groups: dict[str, list[Path]] = defaultdict(list)
    folders, failed, ignored = scan(path)
    if not labels:
        for folder in folders:
            groups[_NAME_RE.match(folder.name)["prefix"]].append(folder)
        return dict(groups), failed, ignored
    for folder in folders:
        try:
            meta = read_label_json(folder / f"{folder.name}_labels_metadata.json")
        except InputError as e:
            failed[folder.name] = str(e)
            continue
        groups[str(meta["tile_source"]).removesuffix(".SAFE")].append(folder)
    for source, members in groups.items():
        groups[source] = one_per_place(source, members, failed)
    return dict(groups), failed, ignored


def one_per_place(source: str, folders: list[Path], failed: dict) -> list[Path]:
    """The folders of one tile source, at most one per grid place (x, y). Two folders claiming one
    place (a copy under another acquisition time, say) would become two rows of one patch: the one
    whose name carries its tile source's acquisition is kept, the others fail as inputs naming it;
    when none or several carry it, all of them fail (``failed``: {folder name: error})."""
    by_place: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for f in folders:
        by_place[_row_col(f)].append(f)
    m = _SOURCE_RE.match(source)
    own = f"{m['mission']}_MSIL2A_{m['when']}" if m else None
    keep = []
    for (y, x), claims in by_place.items():
        if len(claims) == 1:
            keep += claims
            continue
        genuine = [f for f in claims if _NAME_RE.match(f.name)["prefix"] == own]
        chosen = genuine[0] if len(genuine) == 1 else None
        for f in claims:
            if f is chosen:
                continue
            others = ", ".join(g.name for g in claims if g is not f)
            failed[f.name] = (f"{f}: claims the patch at x {x}, y {y} of {source} that {others} also claims"
                              + (f" (kept: its name carries the tile's acquisition {own}); not built" if chosen
                                 else "; none is built: give each patch once"))
        if chosen is not None:
            keep.append(chosen)
    return sorted(keep, key=_row_col)


def list_files(lists_dir) -> list[Path]:
    """The official list files present in ``lists_dir`` (``<name>.csv.bz2`` or ``<name>.csv``)."""
    out = []
    for name in LIST_FILES.values():
        base = Path(lists_dir) / name
        out += [p for p in (base.with_suffix(".csv.bz2"), base.with_suffix(".csv")) if p.exists()][:1]
    return out


def read_list(lists_dir: str, key: str) -> frozenset:
    """One official list (``<name>.csv.bz2`` or ``<name>.csv``), as a set of patch names."""
    base = Path(lists_dir) / LIST_FILES[key]
    for path in (base.with_suffix(".csv.bz2"), base.with_suffix(".csv")):
        if path.exists():
            st = path.stat()
            return _parse_list(str(path), st.st_size, st.st_mtime_ns)  # cached, but never across a change
    raise InputError(base.with_suffix(".csv.bz2"), "official list is missing")


@lru_cache(maxsize=8)
def _parse_list(path_str: str, size: int, mtime_ns: int) -> frozenset:
    path = Path(path_str)
    try:
        raw = bz2.decompress(path.read_bytes()) if path.suffix == ".bz2" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read list ({e})") from None
    names = [ln.strip().split(",")[0] for ln in text.splitlines() if ln.strip()]
    bad = [n for n in names if not _NAME_RE.match(n)]
    if bad:
        raise InputError(path, f"not a patch name: {bad[0]!r}")
    return frozenset(names)


def official_split(lists_dir: str | None, name: str) -> str:
    if not lists_dir:
        return "none"
    for split in ("train", "validation", "test"):
        if name in read_list(lists_dir, split):
            return split
    return "none"


def tile_origin(tile: str, meta: dict, x: int, y: int, path) -> tuple[float, float]:
    """The tile's upper-left corner implied by a patch, checked against the known tile grid."""
    ulx = float(meta["coordinates"]["ulx"]) - x * PATCH_M
    uly = float(meta["coordinates"]["uly"]) + y * PATCH_M
    if tile in REAL_TILES and (ulx, uly) != REAL_TILES[tile][1:]:
        raise InputError(path, f"patch coordinates put tile {tile} at ({ulx:g}, {uly:g}), "
                               f"the tile grid says {REAL_TILES[tile][1:]}")
    return ulx, uly


def read_patch(folder: Path) -> dict:
    """One patch folder: its bands (checked for size), labels and metadata."""
    name = folder.name
    m = _NAME_RE.match(name)
    if not m:
        raise InputError(folder, "folder name is not a BigEarthNet patch name")
    meta = read_label_json(folder / f"{name}_labels_metadata.json")
    c = meta["coordinates"]
    bands, crs, transforms = read_bands(folder, name)
    for band, t in transforms.items():  # on the grid the label JSON's coordinates give
        res = BAND_RESOLUTION[band]
        expect = (float(res), 0.0, float(c["ulx"]), 0.0, -float(res), float(c["uly"]))
        if any(abs(a - b) > 1e-6 for a, b in zip(tuple(t)[:6], expect)):
            raise InputError(folder / f"{name}_{band}.tif", f"geotransform {tuple(t)[:6]} is not the {res} m grid at "
                                                            f"the label JSON's corner ({c['ulx']}, {c['uly']})")
    x, y = int(m["x"]), int(m["y"])
    tm = _TILE_RE.search(str(meta["tile_source"]))
    tile = tm.group(1) if tm else "unknown"
    return {"name": name, "prefix": m["prefix"], "x": x, "y": y, "bands": bands, "meta": meta, "tile": tile,
            "crs": f"EPSG:{crs.to_epsg()}" if crs and crs.to_epsg() else str(crs), "path": folder}


def _row_col(folder: Path) -> tuple[int, int]:
    """Patches of a tile in row-major order, as products are written."""
    m = _NAME_RE.match(folder.name)
    return int(m["y"]), int(m["x"])


def process_tile_source(task_id: str, folders: list[Path], cfg, part_path: Path, progress=None) -> dict:
    """One tile_source's patch folders into a part file (``patch_ingest.ingest``): screened by
    the official snow and cloud lists, split by the official lists."""
    snow = read_list(cfg.official_lists, "snow") if cfg.official_lists else frozenset()
    cloud = read_list(cfg.official_lists, "cloud") if cfg.official_lists else frozenset()

    def meta(p: dict) -> dict:
        c = p["meta"]["coordinates"]
        return {"name": p["name"], "product": task_id, "tile": p["tile"],
                "date": str(p["meta"]["acquisition_date"]).replace(" ", "T"),
                "split": official_split(cfg.official_lists, p["name"]), "crs": p["crs"], "x": p["x"], "y": p["y"],
                "bounds": [float(c["ulx"]), float(c["uly"]), float(c["lrx"]), float(c["lry"])],
                "v1_name": p["name"], "s1_name": ""}

    def labels(p: dict):
        c43 = p["meta"]["classes"]  # "labels": [] teaches nothing
        return (c43, nom.to_19(c43)) if c43.any() else None

    def describe(folder: Path):
        """A patch not read (on a list, failed, no labels): its label JSON alone."""
        name = folder.name
        x, y = _row_col(folder)[::-1]
        out = {"name": name, "product": task_id, "x": x, "y": y, "split": official_split(cfg.official_lists, name)}
        m = read_label_json(folder / f"{name}_labels_metadata.json")
        c = m["coordinates"]
        tm = _TILE_RE.search(str(m["tile_source"]))
        out.update(tile=tm.group(1) if tm else "unknown", date=str(m["acquisition_date"]).replace(" ", "T"),
                   crs=georef(folder / f"{name}_B02.tif")["crs"],
                   bounds=[float(c["ulx"]), float(c["uly"]), float(c["lrx"]), float(c["lry"])])
        return out, m["classes"], None

    source = PatchSource(
        xy=lambda f: _row_col(f)[::-1], read=read_patch, labels=labels, meta=meta, describe=describe,
        strays=lambda f: strays(f, patch_files(f.name)),
        screen=lambda f: "snow_list" if f.name in snow else "cloud_list" if f.name in cloud else None,
        check=lambda p, f: tile_origin(p["tile"], p["meta"], p["x"], p["y"], f / f"{f.name}_labels_metadata.json"))
    return ingest(source, folders, cfg, part_path, progress, drops={"snow_list": 0, "cloud_list": 0})
