"""Builder wall time against the bare JPEG2000 decoding of the same tile, in one run.

Writes one synthetic tile (full size by default: 10,980 px), then times, side by side, for
each merge mode (copy: one self-contained archive; virtual: a virtual dataset over parts/):
  decode  - rasterio reads of its 12 band JP2s + SCL, nothing else (the floor);
  build   - `bigearth-sr build` on it (bilinear), one worker, archive + manifest included.
Prints a table with the ratio; target build <= 1.25 x decode.

    python benchmarks/builder_vs_decode.py --work /tmp/bench [--tile-size-m 109800] [--repeat 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import rasterio


def decode_all(product) -> float:
    from dataset_builder.safe import NATIVE
    t = time.perf_counter()
    for band in NATIVE:
        with rasterio.open(product.band_paths[band]) as ds:
            ds.read(1)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/bigearth_bench")
    ap.add_argument("--tile-size-m", type=int, default=109_800)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--compression", default="blosc-lz4")
    args = ap.parse_args()

    from dataset_builder.build import BuildConfig, build
    from dataset_builder.safe import open_product
    from dataset_builder.synth import SynthConfig, write_product

    work = Path(args.work)
    t = time.perf_counter()
    safe = write_product(SynthConfig(tile="T33UUP", tile_size_m=args.tile_size_m, seed=1), work / "products")
    print(f"synthetic tile ready ({time.perf_counter() - t:.0f} s): {safe.name}")
    product = open_product(safe)
    clc = sorted(str(p) for p in (work / "products").glob(f"CLC_T33UUP_{args.tile_size_m}m.tif"))

    rows = []
    decode_all(product)  # warm the page cache so both sides read from memory
    for r, merge in ((r, m) for r in range(args.repeat) for m in ("copy", "virtual")):
        t_dec = decode_all(product)
        out = work / f"build{r}{merge}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = BuildConfig(out_dir=str(out), clc=clc, compression=args.compression, merge=merge, progress=False)
        t = time.perf_counter()
        manifest = build([safe], cfg)
        t_build = time.perf_counter() - t
        info = next(iter(manifest["tiles"].values()))
        size = sum(p.stat().st_size for p in [out / "bigearth_sr.h5", *(out / "parts").glob("*.h5")]
                   if merge == "virtual" or p.parent == out)
        rows.append((merge, t_dec, t_build, info["seconds_decode"], info["seconds_total"], manifest["patches"], size))

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; tile {args.tile_size_m} m "
          f"({args.tile_size_m // 10} px), compression {args.compression}")
    print("| merge | bare decode s | build s | build / decode | decode in build s | tile done s | patches | MB on disk |")
    print("|---|---|---|---|---|---|---|---|")
    for merge, d, b, di, dt, n, size in rows:
        print(f"| {merge} | {d:.1f} | {b:.1f} | {b / d:.2f} | {di:.1f} | {dt:.1f} | {n} | {size / 1e6:.0f} |")
    (work / "result.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
