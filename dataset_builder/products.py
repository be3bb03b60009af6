"""One Level-2A product cut into screened, labelled, super-resolved patches: the per-tile work
of the build, row of patches by row of patches, written to the tile's part file."""
from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bigearth import nomenclature as nom
from bigearth.errors import InputError
from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, PATCH_M, PATCH_PX, RecordBatch, patch_name

from . import archive, catalogue, screening, upsample
from .config import BuildConfig
from .labels import ClcLabeler, JsonLabeler
from .safe import NATIVE, Product, native_uint16, read_band, to_reflectance_dn
from .stats import BandStats, SplitStats


def tile_split(tile: str, fractions) -> str:
    """Deterministic, tile-disjoint split from a hash of the MGRS tile id."""
    h = int(hashlib.sha256(tile.encode()).hexdigest()[:8], 16) / 2 ** 32
    a, b = fractions[0], fractions[0] + fractions[1]
    return "train" if h < a else "validation" if h < b else "test"


def _bounds(geo, x: int, y: int) -> list[float]:
    ulx, uly = geo.ulx + x * PATCH_M, geo.uly - y * PATCH_M
    return [ulx, uly, ulx + PATCH_M, uly - PATCH_M]


# The windows a tile's adaptation learns from: up to 2 x 2 windows of 576 px (a multiple of 36,
# so both networks' coarse grids align), spread over the tile; 1.3 Mpx of a 120 Mpx tile, enough
# for the bounded steps and cheap to degrade
ADAPT_WINDOW = 576


def tile_pieces(bands: dict, convert) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(b10, b20, b60) float32 reflectance x 10000 of the windows a tile adapts on."""
    size = bands[BANDS_10M[0]].shape[0]
    side = min(ADAPT_WINDOW, size - size % 36)
    n = max(1, min(2, size // side))
    starts = [round((size - side) * (i + 0.5) / n) // 36 * 36 for i in range(n)] if n > 1 else [0]
    out = []
    for r in starts:
        for c in starts:
            out.append(tuple(np.stack([convert(b, bands[b][r // f:(r + side) // f, c // f:(c + side) // f]) for b in names])
                             .astype(np.float32) for names, f in ((BANDS_10M, 1), (BANDS_20M, 2), (BANDS_60M, 6))))
    return out


# Rows of patches super-resolved in one call: DSen2 runs over the rows and its reach above and
# below them (40-44 px each side for the default), so one row costs it 1.7x its pixels and three
# 1.2x; measured: its share of a build 18-24 % smaller (benchmarks/sr_patch_folders.py). Larger
# groups hold more rows in memory for little more.
ROWS_PER_CALL = 3


def row_drop_reasons(scl: np.ndarray, y: int, ncols: int, thresholds: dict) -> list[str | None]:
    """Why screening drops each patch of grid row ``y`` (None: kept), from the tile's 20 m SCL:
    the one rule the build and its plan apply."""
    side = PATCH_PX // 2  # SCL is a 20 m band
    strip = scl[y * side:(y + 1) * side, : ncols * side]
    return screening.drop_reasons(screening.scl_fractions(strip, side), thresholds)


def scl_screening(product: Product, thresholds: dict) -> dict[str, int]:
    """Patches of the tile's grid screening keeps (``kept``) and drops, by reason, as the build
    screens them (``row_drop_reasons``), before labels: what ``--dry-run`` expects. Decodes the SCL
    band alone, at full resolution (a JPEG 2000 overview of a class band is a wavelet average of
    codes, not classes)."""
    scl = read_band(product, "SCL")
    ncols = product.geocoding.grid_cols
    counts: dict[str, int] = {"kept": 0}
    for y in range(ncols):
        for r in row_drop_reasons(scl, y, ncols, thresholds):
            counts[r or "kept"] = counts.get(r or "kept", 0) + 1
    return counts


def process_product(product: Product, cfg: BuildConfig, part_path: Path, progress=None) -> dict:
    """Cut one product into screened, labelled, super-resolved patches in a part file."""
    geo = product.geocoding
    ncols = geo.grid_cols
    up = cfg.upsampler()
    if cfg.labels_json:
        json_labeler = JsonLabeler(cfg.labels_json)
        label_source = str(cfg.labels_json)

        def strip_labels(y):
            return json_labeler.strip_classes(product.prefix, y, ncols, lambda x: _bounds(geo, x, y))
    elif cfg.clc:
        labeler = ClcLabeler(cfg.clc, cfg.label_res, cfg.clc_values)
        classes_idx, clc_path = labeler.tile_classes(geo.crs, geo.ulx, geo.uly, geo.size_10m * 10)
        lab_px = PATCH_M // cfg.label_res
        label_source = str(clc_path)

        def strip_labels(y):
            return labeler.strip_classes(classes_idx[y * lab_px:(y + 1) * lab_px, : ncols * lab_px], ncols)
    else:
        raise InputError(product.path, "nothing to label the patches with: give --clc or --labels-json")

    t0 = time.perf_counter()
    # whole bands: GDAL already decodes each on every core, and windowed reads cost 13 % more
    bands = {b: read_band(product, b) for b in NATIVE}
    t_decode = time.perf_counter() - t0
    convert = lambda b, a: to_reflectance_dn(product, b, a)  # noqa: E731
    split = tile_split(product.tile, cfg.split_fractions)
    up = upsample.for_scene(up, lambda: tile_pieces(bands, convert))  # adapted to this tile alone, if asked

    def patch_meta(x: int, y: int) -> dict:
        """Patch (x, y)'s descriptive fields: the archive's record and the catalogue's row alike."""
        return {"name": patch_name(product.prefix, x, y), "product": product.name, "tile": product.tile,
                "date": product.iso_date, "split": split, "crs": geo.crs, "x": x, "y": y, "bounds": _bounds(geo, x, y)}

    def screen_row(y: int):
        """(drop reason or None per column, the row's classes, the kept columns) of row ``y``."""
        reasons = row_drop_reasons(bands["SCL"], y, ncols, cfg.thresholds)
        classes = strip_labels(y)
        for x in range(ncols):
            if reasons[x] is None and not classes[x].any():
                reasons[x] = "no_labels"
        return reasons, classes, [x for x in range(ncols) if reasons[x] is None]

    def cut_rows(y0: int, y1: int) -> list:
        """Screen, label and cut rows [y0, y1) of patches: one (y, (reasons, classes, batch, stats)) per row. The
        rows are super-resolved in one call over the columns any of them keeps (DSen2's reach is paid
        once per group of rows, not once per row: ROWS_PER_CALL). Pure, so groups can run on several
        threads."""
        rows = [screen_row(y) for y in range(y0, y1)]
        cols = sorted(set().union(*(keep for _, _, keep in rows)))
        if cols:
            sr = upsample.upsample_rows(up, bands, convert, y0 * PATCH_PX, y1 * PATCH_PX, cols)
        out = []
        for y, (reasons, classes, keep) in zip(range(y0, y1), rows):
            if not keep:
                out.append((y, (reasons, classes, None, None)))
                continue
            r0, r1 = y * PATCH_PX, (y + 1) * PATCH_PX
            strip = {}
            for key, names, f in (("data_10m", BANDS_10M, 1), ("data_20m", BANDS_20M, 2), ("data_60m", BANDS_60M, 6)):
                strip[key] = np.stack([native_uint16(product, n, bands[n][r0 // f:r1 // f]) for n in names])
            strip["data_super"] = upsample.assemble_super(strip["data_10m"], sr[:, r0 - y0 * PATCH_PX:r1 - y0 * PATCH_PX])
            arrays = {}
            for key, a in strip.items():
                p = a.shape[1]  # patch side at this resolution
                cube = a[:, :, : ncols * p].reshape(a.shape[0], p, ncols, p).transpose(2, 0, 1, 3)
                arrays[key] = np.ascontiguousarray(cube[keep])
            arrays["classes"] = classes[keep]
            arrays["classes_19"] = nom.to_19(arrays["classes"])
            meta = [{**patch_meta(x, y), "v1_name": "", "s1_name": ""} for x in keep]
            part = BandStats()
            part.add(arrays)
            out.append((y, (reasons, classes, RecordBatch(arrays, meta), part)))
        return out

    drops = {k: 0 for k in list(screening.SCL_CLASSES) + ["no_labels"]}
    listed = catalogue.Rows()  # every grid patch, kept or not, with why
    stats = SplitStats()  # one split per product: the tile's
    writer = archive.PartWriter(part_path, cfg.compression, checksums=cfg.checksums)
    # rows are cut on a few threads (numpy and torch release the GIL) and written in order
    threads = max(1, min(4, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(threads)
    pending: deque = deque()

    def drain(limit: int) -> None:
        while len(pending) > limit:
            for y, (reasons, classes, batch, part) in pending.popleft().result():
                for x, r in enumerate(reasons):
                    if r is not None:
                        drops[r] += 1
                    listed.add(patch_meta(x, y), r or catalogue.KEPT, classes[x])
                if batch is not None:
                    writer.append(batch)
                    stats.merge({split: part.sums})
                if progress is not None:
                    progress(1)

    try:
        for y in range(0, ncols, ROWS_PER_CALL):
            pending.append(pool.submit(cut_rows, y, min(ncols, y + ROWS_PER_CALL)))
            drain(threads)  # bounded look-ahead keeps memory to a few groups of rows
        drain(0)
        n = writer.n
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        pool.shutdown(cancel_futures=True)
    return {**upsample.scene_record(up), "kept": n, "drops": drops, "stats": stats.to_json(), "catalogue": listed.to_json(),
            "labels": label_source,
            "baseline": product.baseline, "offsets_removed": any(product.offsets.values()),
            "seconds_decode": round(t_decode, 3), "seconds_total": round(time.perf_counter() - t0, 3)}
