"""Choosing the HDF5 filter for the patch arrays: size and write/read time per filter, each with
and without HDF5's Fletcher-32 checksum (the archive's default since issue 20), one run.

    python benchmarks/hdf5_compression.py path/to/bigearth_sr.h5 [--patches 400]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import h5py
import hdf5plugin  # noqa: F401  (Blosc filters)

from dataset_builder.archive import COMPRESSIONS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("archive")
    ap.add_argument("--patches", type=int, default=400)
    args = ap.parse_args()
    with h5py.File(args.archive, "r") as f:
        n = min(args.patches, f["data_super"].shape[0])
        data = f["data_super"][:n]
    raw = data.nbytes
    print(f"{n} patches of data_super ({raw / 1e6:.0f} MB raw), {os.cpu_count()} cores")
    print("| filter | Fletcher-32 | MB on disk | ratio | write MB/s (raw) | read MB/s (raw) |")
    print("|---|---|---|---|---|---|")
    for (name, opts), checksum in ((c, k) for c in COMPRESSIONS.items() for k in (False, True)):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.h5")
            t = time.perf_counter()
            with h5py.File(path, "w") as f:
                f.create_dataset("x", data=data, chunks=(1, *data.shape[1:]), fletcher32=checksum, **opts)
            tw = time.perf_counter() - t
            size = os.path.getsize(path)
            t = time.perf_counter()
            with h5py.File(path, "r") as f:
                for i in range(n):
                    f["x"][i]
            tr = time.perf_counter() - t
        print(f"| {name} | {'on' if checksum else 'off'} | {size / 1e6:.1f} | {raw / size:.2f} | {raw / tw / 1e6:.0f} | "
              f"{raw / tr / 1e6:.0f} |")


if __name__ == "__main__":
    main()
