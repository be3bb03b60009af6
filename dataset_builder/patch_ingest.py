"""The per-patch ingest of BigEarthNet patch folders, v1 and v2 alike: the folder's band
GeoTIFFs read and checked, the entries it holds besides them accounted for, each patch
super-resolved with its neighbours of the same tile as context, and the kept patches written
into a part file. ``ingest`` is the one loop both inputs run; ``PatchSource`` says what differs
(how a folder is placed, read, screened and labelled)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio

from bigearth import nomenclature as nom
from bigearth.errors import InputError
from bigearth.files import check_regular
from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, BAND_RESOLUTION, PATCH_M, PATCH_PX, RecordBatch

from . import archive, catalogue, upsample
from .geotiff import read_raster
from .stats import SplitStats


def reading():
    """The GDAL settings the patch readers run under, entered once per task: a patch folder's
    GeoTIFFs carry their georeference inside, so GDAL need not list folders for side-car files,
    and one environment for all reads spares rasterio setting one up for each of them."""
    return rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")


def read_bands(folder: Path, stem: str) -> tuple[dict, object, dict]:
    """The 12 band GeoTIFFs of a patch folder (``<stem>_<band>.tif``, as BigEarthNet v1 and v2
    store them; ``geotiff.read_raster``), checked: one uint16 band each, the patch's size at the
    band's resolution, one CRS for all. Returns (band -> array, CRS, band -> geotransform)."""
    bands, transforms, crs = {}, {}, None
    for band in BANDS_10M + BANDS_20M + BANDS_60M:
        path = folder / f"{stem}_{band}.tif"
        want = PATCH_PX * 10 // BAND_RESOLUTION[band]
        r = read_raster(path)
        if r.count != 1 or r.array.dtype != np.uint16:
            raise InputError(path, f"expected one uint16 band, found {r.count} band(s) of {r.array.dtype}")
        if r.array.shape != (want, want):
            raise InputError(path, f"raster is {r.array.shape[0]} x {r.array.shape[1]}, expected {want} x {want}")
        if r.crs is None or (crs is not None and r.crs != crs):
            raise InputError(path, f"CRS {r.crs} differs from the patch's other bands ({crs})"
                             if crs is not None else "raster has no CRS")
        bands[band], transforms[band] = r.array, r.transform
        crs = crs or r.crs
    return bands, crs, transforms


def strays(folder: Path, expected: set[str]) -> dict[str, str]:
    """{path: why} for every entry of a patch folder that the reader does not read (a note, a
    link, a sub-folder): the manifest accounts for all it was given, these under inputs_ignored."""
    out = {}
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name in expected:
                    continue
                kind = ("a link" if e.is_symlink() else "a folder" if e.is_dir(follow_symlinks=False) else "a file")
                out[e.path] = f"{kind} in a patch folder, not one of the patch's files: not read"
    except OSError:  # an unreadable folder fails as that patch, where its files are read
        pass
    return out


def patch_files(stem: str, labels_json: bool = True) -> set[str]:
    """The names the readers take from a patch folder: the 12 bands (and v1's label JSON)."""
    names = {f"{stem}_{b}.tif" for b in BANDS_10M + BANDS_20M + BANDS_60M}
    return names | {f"{stem}_labels_metadata.json"} if labels_json else names


def cubes_of(p: dict) -> dict:
    return {key: np.stack([p["bands"][b] for b in names]).astype(np.uint16)
            for key, names in (("data_10m", BANDS_10M), ("data_20m", BANDS_20M), ("data_60m", BANDS_60M))}


def sr_inputs(cubes: dict, up) -> tuple:
    return (cubes["data_10m"].astype(np.float32) if up.needs_10m else None,
            cubes["data_20m"].astype(np.float32), cubes["data_60m"].astype(np.float32))


# Rows and columns of patches super-resolved in one call at most (a v1 tile has up to ~90 x 90):
# large enough that the block's margins cost little (3 x 16: 1.3x the patches' pixels against
# 2.8x alone), small enough to hold a few MB and a few rows read ahead
BLOCK = (3, 16)


class Neighbours:
    """The adjacent patches of the same tile_source, as context for super-resolution: the
    archive cut the tile into patches, and a whole-tile run would have seen these pixels.
    Patches on the official snow/cloud lists count too (they are imagery; only their labels are
    unusable); a missing or unreadable neighbour leaves that side mirrored. Every patch is read
    once: what was read as a neighbour is what ``patch`` hands the build later, and rows above
    the previous one are dropped from the cache."""

    def __init__(self, folders: list[Path], up, xy, read, wanted: Callable[[Path], bool] = lambda folder: True):
        # xy: folder -> (x, y); read: folder -> the patch (a dict with its "bands"); wanted: whether
        # the build will super-resolve that folder's patch (not screened out)
        self.xy = xy
        self.by_xy = {self.xy(f): f for f in folders}
        self.up = up
        self.read = read
        self.wanted = wanted
        self.cache: dict = {}
        self.done: dict = {}  # (x, y) -> the super-resolved bands of a patch a run computed ahead

    def _entry(self, x: int, y: int) -> tuple:
        if (x, y) not in self.cache:
            folder = self.by_xy.get((x, y))
            entry = (None, None)
            if folder is not None:
                try:
                    p = self.read(folder)
                    entry = (p, sr_inputs(cubes_of(p), self.up))
                except (InputError, nom.UnknownClassError):  # reported when that patch itself is built
                    pass
            self.cache[(x, y)] = entry
        return self.cache[(x, y)]

    def patch(self, folder: Path) -> dict:
        """The patch in ``folder``, read once (a bad one raises its error here)."""
        p = self._entry(*self.xy(folder))[0]
        return p if p is not None else self.read(folder)

    def inputs(self, x: int, y: int):
        return self._entry(x, y)[1]

    def cubes(self, p: dict) -> dict:
        """The patch's native cubes and its ``data_super``, super-resolved with the neighbours as context."""
        cubes = cubes_of(p)
        x, y = p["x"], p["y"]
        # rows are built in order: inputs above the row before and outputs above this one are spent
        for cache, top in ((self.cache, y - 1), (self.done, y)):
            for key in [k for k in cache if k[1] < top]:
                del cache[key]
        sr = self.done.pop((x, y), None)
        if sr is None:
            sr = self._run_from(x, y)
        cubes["data_super"] = upsample.assemble_super(cubes["data_10m"], sr)
        return cubes

    def _has(self, x: int, y: int) -> bool:
        return self.inputs(x, y) is not None

    def _ok(self, x: int, y: int) -> bool:
        """Whether (x, y) may join a block: a wanted, readable patch not super-resolved yet."""
        f = self.by_xy.get((x, y))
        return f is not None and (x, y) not in self.done and self.wanted(f) and self._has(x, y)

    def _block_at(self, x: int, y: int) -> tuple[int, int]:
        """(rows, columns) of the block of patches that starts at (x, y): a run to its right and as
        many rows below as hold the whole run, up to BLOCK, such that each side of the ring around
        it is wholly there or wholly missing (the method's margin is then mirrored along the whole
        side, which is what each patch alone would see)."""
        above, below = self._has(x, y - 1), self._has(x, y + 1)
        n = 1
        while (n < BLOCK[1] and self._ok(x + n, y) and self._has(x + n, y - 1) == above
               and self._has(x + n, y + 1) == below):
            n += 1
        left, right = self._has(x - 1, y), self._has(x + n, y)
        k = 1
        while (k < BLOCK[0] and all(self._ok(x + i, y + k) for i in range(n))
               and self._has(x - 1, y + k) == left and self._has(x + n, y + k) == right):
            k += 1
        if k > 1 and len({self._has(x + i, y + k) for i in range(n)}) > 1:
            k -= 1  # the row below is partly missing; the last row of the block is all there
        return k, n

    def _run_from(self, x: int, y: int) -> np.ndarray:
        """Patch (x, y) super-resolved in one call with the block that starts at it
        (``_block_at``), the others' outputs kept for later. A block whose output fails the
        method's check is redone patch by patch, so that only the failing patch fails."""
        k, n = self._block_at(x, y)
        if k * n > 1:
            grid = [[self.inputs(x + dx, y + dy) for dx in range(-1, n + 1)] for dy in range(-1, k + 1)]
            try:
                outs = upsample.upsample_block_of_patches(self.up, grid)
            except InputError:
                outs = None
            if outs is not None:
                self.done.update({(x + i, y + j): outs[j][i] for j in range(k) for i in range(n)})
                return self.done.pop((x, y))
        return upsample.upsample_with_context(self.up, *self.inputs(x, y), self.around(x, y))

    def around(self, x: int, y: int) -> dict:
        return {(dy, dx): self.inputs(x + dx, y + dy)
                for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)}


@dataclasses.dataclass
class PatchSource:
    """What one kind of patch folder needs of the loop: ``xy(folder)`` its grid place (x, y);
    ``read(folder)`` the patch (a dict with its ``bands``; InputError for a bad one);
    ``labels(patch)`` its (43, 19) multi-hot vectors, or None for a patch without labels
    (dropped as ``no_labels``); ``meta(patch)`` its descriptive fields; ``strays(folder)`` {path: why} of the entries
    it holds besides the patch's files; ``screen(folder)`` the drop reason of a folder a list
    screens out, or None; ``check(patch, folder)`` a further check that may raise InputError;
    ``describe(folder)`` what the catalogue can say of a patch whose bands are not read (screened
    out, failed, without labels) from its name and small files alone: (meta fields, 43 and 19
    multi-hot or None); its footprint comes from the grid of the task's read patches."""

    xy: Callable[[Path], tuple[int, int]]
    read: Callable[[Path], dict]
    labels: Callable[[dict], tuple[np.ndarray, np.ndarray] | None]
    meta: Callable[[dict], dict]
    strays: Callable[[Path], dict]
    screen: Callable[[Path], str | None] = lambda folder: None
    check: Callable[[dict, Path], None] = lambda patch, folder: None
    describe: Callable[[Path], tuple[dict, np.ndarray | None, np.ndarray | None]] = \
        lambda folder: ({"name": folder.name}, None, None)


def ingest(source: PatchSource, folders: list[Path], cfg, part_path: Path, progress=None,
           drops: dict | None = None, unread: list[tuple[Path, str]] = ()) -> dict:
    """The patch folders of one tile, in row-major order, into a part file: each screened,
    read, checked, labelled and super-resolved with its neighbours as context. A bad patch is
    recorded against its name and the others go on. Returns the task's result (kept, drops,
    statistics, failed and ignored inputs, the catalogue's rows); ``drops`` holds the counts to
    start from, ``unread`` the (folder, reason) of patches screened out before the task (v2's)."""
    context = Neighbours(folders, cfg.upsampler(), source.xy, source.read,
                         wanted=lambda f: source.screen(f) is None)
    # adapted (if asked) to this acquisition's own patches, and to nothing else
    context.up = upsample.for_scene(context.up, lambda: scene_pieces(context, [source.xy(f) for f in folders]))
    drops = {**(drops or {}), "no_labels": 0}
    failed: dict[str, str] = {}  # patch name -> error
    ignored: dict[str, str] = {}
    listed: list = []  # the catalogue's entries in row-major order: a kept patch's meta, or one to describe

    def unread_row(folder: Path, status: str, error: str = "") -> None:
        listed.append((folder, status, error))

    def patches():
        for folder in sorted(folders, key=lambda f: source.xy(f)[::-1]):
            if progress is not None:
                progress(1)
            ignored.update(source.strays(folder))
            reason = source.screen(folder)
            if reason is not None:
                drops[reason] = drops.get(reason, 0) + 1
                unread_row(folder, reason)
                continue
            try:
                p = context.patch(folder)
                source.check(p, folder)
            except (InputError, nom.UnknownClassError) as e:
                failed[folder.name] = str(e)
                unread_row(folder, catalogue.FAILED, str(e))
                continue
            labels = source.labels(p)
            if labels is None:  # no labels teach nothing: dropped and counted, as products do
                drops["no_labels"] += 1
                unread_row(folder, "no_labels")
                continue
            try:
                cubes = context.cubes(p)
            except InputError as e:  # the method's output failed its check here (DSen2 out of range): this
                failed[folder.name] = f"{folder}: {e}"  # patch fails, the tile's others go on
                unread_row(folder, catalogue.FAILED, failed[folder.name])
                continue
            meta = source.meta(p)
            listed.append((meta, labels))
            yield dict(cubes, classes=labels[0], classes_19=labels[1]), meta

    n, stats = write_part(part_path, cfg.compression, patches(), checksums=cfg.checksums)
    for folder, reason in unread:
        unread_row(folder, reason)
    return {"kept": n, "drops": drops, "stats": stats.to_json(), "failed_inputs": failed, "inputs_ignored": ignored,
            "catalogue": catalogue_rows(listed, source).to_json(), **upsample.scene_record(context.up)}


def georef(tif: Path) -> dict:
    """The CRS and the patch bounds of a band GeoTIFF, from its header alone (no pixel is
    decoded): what the catalogue says of a patch whose bands are not read."""
    check_regular(tif)
    with rasterio.open(tif) as ds:
        t, w, h = ds.transform, ds.width, ds.height
        crs = f"EPSG:{ds.crs.to_epsg()}" if ds.crs and ds.crs.to_epsg() else (str(ds.crs) if ds.crs else None)
    return {"crs": crs, "bounds": [float(t.c), float(t.f), float(t.c + w * t.a), float(t.f + h * t.e)]}


def catalogue_rows(listed: list, source: PatchSource) -> catalogue.Rows:
    """The task's catalogue: kept patches as written; the others as ``source.describe`` says,
    placed on the grid the kept patches share (corner = tile corner + (x, -y) x 1,200 m, the
    grid every BigEarthNet tile's patches lie on, which the readers check), or without a
    footprint when the task kept none."""
    grid = None
    for entry in listed:
        if isinstance(entry[0], dict) and entry[0].get("bounds") is not None:
            m = entry[0]
            grid = (m["bounds"][0] - m["x"] * PATCH_M, m["bounds"][1] + m["y"] * PATCH_M, m["crs"])
            break
    rows = catalogue.Rows()
    for entry in listed:
        if isinstance(entry[0], dict):
            meta, (c43, c19) = entry
            rows.add(meta, catalogue.KEPT, c43, c19)
            continue
        folder, status, error = entry
        try:
            meta, c43, c19 = source.describe(folder)
        except (InputError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # it says what it knows
            meta, c43, c19 = {"name": folder.name}, None, None
            error = error or f"not described: {e}"
            x, y = source.xy(folder)
            if x >= 0 and y >= 0:  # placed on the grid below
                meta.update(x=x, y=y)
        if grid is not None and meta.get("x") is not None and meta.get("y") is not None:
            ulx, uly = grid[0] + meta["x"] * PATCH_M, grid[1] - meta["y"] * PATCH_M
            meta = {"crs": grid[2], "bounds": [ulx, uly, ulx + PATCH_M, uly - PATCH_M], **meta}
        rows.add(meta, status, c43, c19, error)
    return rows


ADAPT_PATCHES = 16


def scene_pieces(context: "Neighbours", places: list[tuple[int, int]], limit: int = ADAPT_PATCHES) -> list:
    """What one acquisition's patches give adaptation: up to ``limit`` patches spread over the
    tile in row-major order, each as the 3 x 3 mosaic of it and its neighbours where all eight are
    there (360 px: large enough for the 6x protocol), else alone (120 px: the 2x protocol only).
    Missing and unreadable patches give no inputs (they fail as themselves when built)."""
    order = sorted(places, key=lambda p: (p[1], p[0]))
    out = []
    for x, y in order[::max(1, len(order) // limit)][:limit]:
        rows = [[context.inputs(x + dx, y + dy) for dx in (-1, 0, 1)] for dy in (-1, 0, 1)]
        if all(i is not None for row in rows for i in row):
            out.append(tuple(np.concatenate([np.concatenate([i[k] for i in row], axis=2) for row in rows], axis=1)
                             for k in range(3)))
        elif rows[1][1] is not None:
            out.append(rows[1][1])
    return out


def write_part(part_path: Path, compression: str, patches, batch: int = 64, checksums: bool = True) -> tuple[int, SplitStats]:
    """Write ``(arrays, meta)`` of single patches into a part file (atomically: nothing is left
    on an error) with their per-split statistics; the BigEarthNet ingests' one writer. Patches go
    in as RecordBatches of ``batch``: one patch at a time, the HDF5 resizes (one per dataset)
    cost as much as the patch's other work. The patches are produced (read) under
    ``reading()``'s GDAL settings."""
    stats = SplitStats()
    writer = archive.PartWriter(part_path, compression, checksums=checksums)
    queue: list = []

    def flush() -> None:
        records = RecordBatch({k: np.stack([a[k] for a, _ in queue]) for k in queue[0][0]}, [m for _, m in queue])
        writer.append(records)
        stats.add(records.arrays, [m["split"] for m in records.meta])
        queue.clear()

    try:
        with reading():
            for arrays, meta in patches:
                queue.append((arrays, meta))
                if len(queue) >= batch:
                    flush()
        if queue:
            flush()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.n, stats
