"""What the catalogue (patches.parquet) costs a build: writing it from the tasks' rows, its size,
and the bytes its rows add to each task's resume record, for N tiles of G x G grid patches.

Rows are made as a build makes them (`catalogue.Rows`, one per grid patch, on the real tiles'
grids from `dataset_builder.tiles`, a third dropped with a reason, labels drawn at random), so the
cost is the writer's alone; the build-level cost (the same build with and without the catalogue,
side by side) is in benchmarks/RESULTS.md.

    python benchmarks/catalogue.py --tiles 20 --grid 47        # the scale benchmark's largest size
    python benchmarks/catalogue.py --tiles 125 --grid 91       # BigEarthNet v1's 125 full tiles
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bigearth import nomenclature as nom  # noqa: E402
from bigearth.record import PATCH_M, patch_name  # noqa: E402
from dataset_builder import catalogue  # noqa: E402
from dataset_builder.tiles import REAL_TILES  # noqa: E402

REASONS = ("cloud", "snow", "shadow", "nodata", "cirrus")


def task_rows(k: int, grid: int, rng) -> dict:
    tile = sorted(REAL_TILES)[k % len(REAL_TILES)]
    epsg, ulx, uly = REAL_TILES[tile]
    prefix = f"S2A_MSIL2A_2017{1 + k % 12:02d}{1 + k % 28:02d}T101031"
    rows = catalogue.Rows()
    for y in range(grid):
        for x in range(grid):
            status = "kept" if rng.random() < 0.66 else REASONS[rng.integers(len(REASONS))]
            hot = (rng.random(nom.NUM_CLASSES) < 0.08).astype(np.uint8)
            x0, y0 = ulx + x * PATCH_M, uly - y * PATCH_M
            rows.add({"name": patch_name(prefix, x, y), "product": f"{prefix}_N0500_R022_{tile}_x", "tile": tile,
                      "date": f"2017-{1 + k % 12:02d}-{1 + k % 28:02d}T10:10:31", "split": "train", "crs": f"EPSG:{epsg}",
                      "x": x, "y": y, "bounds": [x0, y0, x0 + PATCH_M, y0 - PATCH_M]}, status, hot)
    return rows.to_json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--tiles", type=int, default=20, help="tasks (tiles)")
    ap.add_argument("--grid", type=int, default=47, help="grid patches a side of each tile")
    ap.add_argument("--repeat", type=int, default=2, help="writes timed (the best is reported)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    tasks = [task_rows(k, args.grid, rng) for k in range(args.tiles)]
    collect = time.perf_counter() - t
    record_bytes = [len(json.dumps(c)) for c in tasks]
    best = float("inf")
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.repeat):
            t = time.perf_counter()
            res = catalogue.write(Path(d) / catalogue.CATALOGUE_NAME, tasks)
            best = min(best, time.perf_counter() - t)
        size = (Path(d) / catalogue.CATALOGUE_NAME).stat().st_size
    n = res["rows"]
    print(json.dumps({"tiles": args.tiles, "grid": args.grid, "rows": n, "write_s": round(best, 2),
                      "write_us_per_row": round(1e6 * best / n, 1), "parquet_bytes": size,
                      "parquet_bytes_per_row": round(size / n, 1), "collect_s": round(collect, 2),
                      "record_bytes_per_task": int(np.mean(record_bytes))}, indent=1))


if __name__ == "__main__":
    main()
