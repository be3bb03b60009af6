"""The BigEarthNet v1 and v2 ingests against a bare rasterio read of the same patch folders.

The four real v1 patches in ``../shared/fixtures/bigearthnet-v1/`` are replicated, each copy
moved to its own place on its tile's grid (GeoTIFF transforms and label JSON coordinates
rewritten), into a v1 folder and a v2 folder (``dataset_builder.synth_ben.make_v2``'s layout), ``--patches``
in all. Then, side by side, on one process and on ``--workers`` (default: every core):

* *bare read*: every band GeoTIFF of every patch (and v2's reference map) read with rasterio,
  nothing else, the patches split over a process pool; the spec's reference;
* *bare tifffile read*: the same files parsed by tifffile, the reader the ingests use
  (``dataset_builder/geotiff.py``): what is left of the ingests' own cost;
* *v1 ingest* / *v2 ingest*: ``bigearth-sr build`` of the folder (bilinear, default
  compression), everything included: labels, the neighbours' context, super-resolution, HDF5
  parts, merge, manifest and checksums.

    python benchmarks/ingest.py --work /tmp/bench_ingest --patches 5000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M  # noqa: E402
from dataset_builder.build import BuildConfig, build  # noqa: E402

BANDS = BANDS_10M + BANDS_20M + BANDS_60M


def replicate_v1(src: Path, dst: Path, n: int) -> list[Path]:
    """``n`` v1 patch folders: the real ones, then copies moved along their tile's grid rows."""
    folders = sorted(p for p in src.iterdir() if p.is_dir())
    data = {}
    for f in folders:
        bands = {}
        for b in BANDS:
            with rasterio.open(f / f"{f.name}_{b}.tif") as ds:
                bands[b] = (ds.read(1), ds.profile, ds.transform)
        data[f] = (bands, json.loads((f / f"{f.name}_labels_metadata.json").read_text()))
    out = []
    for k in range(n):
        f = folders[k % len(folders)]
        bands, meta = data[f]
        prefix, x, y = f.name.rsplit("_", 2)
        shift = k // len(folders)  # copies go to the next grid columns (wrapping rows) of the same tile
        nx, ny = (int(x) + shift) % 90, int(y) + (int(x) + shift) // 90
        name = f"{prefix}_{nx}_{ny}"
        d = dst / name
        d.mkdir(parents=True, exist_ok=True)
        dx, dy = (nx - int(x)) * 1200, (ny - int(y)) * 1200
        for b, (a, profile, t) in bands.items():
            with rasterio.open(d / f"{name}_{b}.tif", "w", **{**profile, "transform": Affine(t.a, 0, t.c + dx, 0, t.e, t.f - dy)}) as ds:
                ds.write(a, 1)
        c = meta["coordinates"]
        m = {**meta, "coordinates": {"ulx": c["ulx"] + dx, "uly": c["uly"] - dy, "lrx": c["lrx"] + dx, "lry": c["lry"] - dy}}
        (d / f"{name}_labels_metadata.json").write_text(json.dumps(m))
        out.append(d)
    return out


def _read_folder(args) -> int:
    folder, extra, reader = args
    files = sorted(Path(folder).glob("*.tif")) + (sorted(Path(extra).glob("*.tif")) if extra else [])
    for p in files:
        if reader == "rasterio":
            with rasterio.open(p) as ds:
                ds.read(1)
        else:
            import tifffile
            tifffile.imread(p)
    return len(files)


def bare_read(folders, maps, workers: int, reader: str = "rasterio") -> float:
    t0 = time.perf_counter()
    args = zip(map(str, folders), [str(m) if m else None for m in maps], [reader] * len(folders))
    if workers == 1:
        list(map(_read_folder, args))
    else:
        with ProcessPoolExecutor(workers) as ex:
            list(ex.map(_read_folder, args, chunksize=64))
    return len(folders) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/bench_ingest")
    ap.add_argument("--patches", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from dataset_builder.synth_ben import make_v2
    from tests.conftest import FIXTURES  # the real patches it measures on
    work = Path(args.work)
    v1 = work / "v1"
    if not v1.exists():
        t0 = time.perf_counter()
        replicate_v1(FIXTURES / "bigearthnet-v1", v1, args.patches)
        make_v2(v1, work / "v2", snow_copy=False)
        print(f"wrote {args.patches} patches in v1 and v2 layouts in {time.perf_counter() - t0:.0f} s", flush=True)
    v1_folders = sorted(p for p in v1.iterdir() if p.is_dir())
    v2_folders = sorted(p for prod in (work / "v2" / "BigEarthNet-S2").iterdir() for p in prod.iterdir())
    v2_maps = [work / "v2" / "Reference_Maps" / f.parent.name / f.name for f in v2_folders]
    rows = []
    for r in range(args.repeat):
        for w in sorted({1, args.workers}):
            for label, fn in (
                    ("bare read, v1", lambda: bare_read(v1_folders, [None] * len(v1_folders), w)),
                    ("bare tifffile read, v1", lambda: bare_read(v1_folders, [None] * len(v1_folders), w, "tifffile")),
                    ("v1 ingest", lambda: _build(v1, work / "out_v1", len(v1_folders), w)),
                    ("bare read, v2", lambda: bare_read(v2_folders, v2_maps, w)),
                    ("bare tifffile read, v2", lambda: bare_read(v2_folders, v2_maps, w, "tifffile")),
                    ("v2 ingest", lambda: _build(work / "v2", work / "out_v2", len(v2_folders), w))):
                rate = fn()
                rows.append((w, label, rate))
                print(f"round {r}, {w} worker(s): {label}: {rate:.0f} patches/s", flush=True)
    best: dict = {}
    for w, label, rate in rows:
        best[w, label] = max(best.get((w, label), 0), rate)
    print(f"\n{len(v1_folders)} patches, best of {args.repeat}:\n")
    print("| workers | reader | patches/s | ingest / bare rasterio read | ingest / bare tifffile read |\n|---:|---|---:|---:|---:|")
    for w in sorted({1, args.workers}):
        for kind in ("v1", "v2"):
            bare, tf, ing = (best[w, f"{x}, {kind}" if x != "ingest" else f"{kind} ingest"]
                             for x in ("bare read", "bare tifffile read", "ingest"))
            print(f"| {w} | bare rasterio read, {kind} | {bare:.0f} | | |\n| {w} | bare tifffile read, {kind} | {tf:.0f} | | |\n"
                  f"| {w} | **{kind} ingest** (build) | {ing:.0f} | **{ing / bare:.2f}** | {ing / tf:.2f} |")


def _build(inp: Path, out: Path, n: int, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    m = build([inp], BuildConfig(out_dir=str(out), progress=False), workers=workers)
    assert m["patches"] == n and not m["tiles_failed"], (m["patches"], n, list(m["tiles_failed"].items())[:3])
    return n / (time.perf_counter() - t0)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
