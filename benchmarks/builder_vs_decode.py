"""Builder wall time against the bare JPEG2000 decoding of the same tile, in one run.

Writes one synthetic tile (full size by default: 10,980 px), then times, side by side, for
each merge mode (copy: one self-contained archive; virtual: a virtual dataset over parts/):
  decode  - rasterio reads of its 12 band JP2s + SCL, nothing else (the floor);
  build   - `bigearth-sr build` on it (bilinear), one worker, archive + manifest included;
            with the archive's checksums (Fletcher-32 per chunk, meta_sha256: the default) and,
            with --checksums on,off, without them, interleaved, to measure what they cost;
            with --compression blosc-lz4,gzip each filter in turn (gzip: the plugin-free archive,
            its chunks deflated on all cores);
  read    - random access to --read-patches data_super rows of the archive just built (h5py,
            one process, from the page cache): what the filter costs a reader.
Prints a table with the ratio; target build <= 1.25 x decode.

    python benchmarks/builder_vs_decode.py --work /tmp/bench [--tile-size-m 109800] [--repeat 1]
        [--merges copy,virtual] [--checksums on,off] [--compression blosc-lz4,gzip]
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


def read_rate(path, n: int, seed: int = 0) -> float:
    """data_super rows read per second, in a random order, through h5py (Blosc via hdf5plugin)."""
    import h5py
    import hdf5plugin  # noqa: F401
    import numpy as np
    with h5py.File(path, "r") as f:
        ds = f["data_super"]
        order = np.random.default_rng(seed).permutation(ds.shape[0])[:n]
        t = time.perf_counter()
        for i in order:
            ds[int(i)]
        return len(order) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/bigearth_bench")
    ap.add_argument("--tile-size-m", type=int, default=109_800)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--compression", default="blosc-lz4", help="filter(s), comma-separated, interleaved")
    ap.add_argument("--read-patches", type=int, default=1000, help="random data_super reads timed per archive")
    ap.add_argument("--merges", default="copy,virtual", help="merge modes to time")
    ap.add_argument("--checksums", default="on", help="on, off or on,off (interleaved)")
    args = ap.parse_args()
    merges = args.merges.split(",")
    checks = [c == "on" for c in args.checksums.split(",")]
    filters = args.compression.split(",")

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
    for r, merge, comp, checksums in ((r, m, f, c) for r in range(args.repeat) for m in merges for f in filters
                                      for c in checks):
        t_dec = decode_all(product)
        out = work / f"build{r}{merge}{comp}{int(checksums)}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = BuildConfig(out_dir=str(out), clc=clc, upsampling="bilinear", compression=comp, merge=merge,
                          checksums=checksums, progress=False)
        t = time.perf_counter()
        manifest = build([safe], cfg)
        t_build = time.perf_counter() - t
        info = next(iter(manifest["tiles"].values()))
        size = sum(p.stat().st_size for p in [out / "bigearth_sr.h5", *(out / "parts").glob("*.h5")]
                   if merge == "virtual" or p.parent == out)
        reads = read_rate(out / "bigearth_sr.h5", args.read_patches)
        rows.append((merge, comp, "on" if checksums else "off", t_dec, t_build, info["seconds_decode"],
                     info["seconds_total"], manifest["patches"], size, reads))
        shutil.rmtree(out, ignore_errors=True)  # two full archives would not fit on a small disk

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; tile {args.tile_size_m} m "
          f"({args.tile_size_m // 10} px)")
    print("| merge | compression | checksums | bare decode s | build s | build / decode | decode in build s "
          "| tile done s | patches | MB on disk | random reads/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for merge, comp, chk, d, b, di, dt, n, size, reads in rows:
        print(f"| {merge} | {comp} | {chk} | {d:.1f} | {b:.1f} | {b / d:.2f} | {di:.1f} | {dt:.1f} | {n} | "
              f"{size / 1e6:.1f} | {reads:.0f} |")
    (work / "result.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
