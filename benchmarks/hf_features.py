"""Hugging Face ``datasets`` on the shards: samples/s of reading ``super.npy`` as
``load_dataset("webdataset", ...)`` infers it (nested lists, turned into an array by the user)
against the features declared by ``shards.hf_features()`` (Array3D, numpy format), side by side
in one run on the same shards, page cache warm, the split's samples read in order.

    python benchmarks/hf_features.py [--products 4 --tile-size-m 24000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loaders import prepare  # noqa: E402  (the loader benchmarks' data, made the same way)


def read_all(ds, typed: bool) -> float:
    """samples/s of taking every sample's super.npy as a uint16 array."""
    t = time.perf_counter()
    for i in range(len(ds)):
        x = ds[i]["super.npy"]
        x = x.astype(np.uint16) if typed else np.asarray(x, np.uint16)
        assert x.shape == (12, 120, 120)
    return len(ds) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/bench_hf")
    ap.add_argument("--products", type=int, default=4)
    ap.add_argument("--tile-size-m", type=int, default=24_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import os

    from datasets import load_dataset

    import shards
    work = Path(args.work)
    os.environ.setdefault("HF_DATASETS_CACHE", str(work / "hf_cache"))
    _, _, index = prepare(work, args.products, args.tile_size_m)
    files = sorted(str(p) for p in (work / "shards").glob("bigearth_sr-train-*.tar"))
    inferred = load_dataset("webdataset", data_files={"train": files}, split="train")
    declared = load_dataset("webdataset", data_files={"train": files}, split="train",
                            features=shards.hf_features()).with_format("numpy")
    a = read_all(declared, True)  # warm the cache once
    rows = []
    for r in range(args.repeat):
        rows.append(("inferred (nested lists)", read_all(inferred, False)))
        rows.append(("declared (shards.hf_features)", read_all(declared, True)))
    print(f"{len(inferred)} training samples, {args.repeat} interleaved rounds (first warm-up: {a:.0f}/s)")
    print("| features | samples/s |\n|---|---|")
    for name in dict.fromkeys(n for n, _ in rows):
        vals = [v for n, v in rows if n == name]
        print(f"| {name} | {' / '.join(f'{v:.0f}' for v in vals)} |")


if __name__ == "__main__":
    main()
