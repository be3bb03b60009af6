"""DSen2's reach paid once per group of patches, in one run: BigEarthNet patch folders (the v1 and
v2 ingests) with each patch super-resolved alone with its neighbours' margin
(``patch_ingest.BLOCK = (1, 1)``, what the ingests ran before) against blocks of adjacent patches
in one call (the default), and the same tile's product one row of patches per call
(``products.ROWS_PER_CALL = 1``, before) against groups of rows (the default); each against
bilinear of the same input. One clear synthetic tile, built once from its product (bilinear) to
make the v1 folders (12 GeoTIFFs and a label JSON each; the real archive holds its cloudy and
snowy patches too, listed, so an interior patch has its eight neighbours as here); then every
variant, interleaved, ``--rounds`` times, one worker, in this process.

    python benchmarks/sr_patch_folders.py [--tile-m 24000] [--rounds 2] [--model default|paper]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_builder import archive, patch_ingest, products  # noqa: E402
from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build  # noqa: E402
from dataset_builder.sr import SIZES  # noqa: E402
from dataset_builder.sr.infer import resolve_precision  # noqa: E402
from dataset_builder.synth import SynthConfig, write_product  # noqa: E402

# label, input, upsampling, the grouping: patch_ingest.BLOCK for folders, products.ROWS_PER_CALL for products
VARIANTS = (("product, bilinear", "l2a", "bilinear", None),
            ("product, dsen2 row by row", "l2a", "dsen2", 1),
            ("product, dsen2 in groups of rows", "l2a", "dsen2", products.ROWS_PER_CALL),
            ("v1 folders, bilinear", "v1", "bilinear", None),
            ("v1 folders, dsen2 patch by patch", "v1", "dsen2", (1, 1)),
            ("v1 folders, dsen2 in blocks", "v1", "dsen2", patch_ingest.BLOCK))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--tile-m", type=int, default=24_000, help="side of the synthetic tile (m)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every variant; the median is reported")
    ap.add_argument("--model", default="default", choices=tuple(SIZES), help="the shipped DSen2 weights (--sr-model)")
    args = ap.parse_args()
    from dataset_builder.synth_ben import write_ben, write_lists
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prod = write_product(SynthConfig(tile_size_m=args.tile_m, seed=1, cloud_cover=0, snow_cover=0), tmp / "p")
        clc = [str(p) for p in (tmp / "p").glob("CLC_*.tif")]
        build([prod], BuildConfig(out_dir=str(tmp / "seed"), upsampling="bilinear", clc=clc, progress=False), workers=1)
        recs = list(archive.iter_records(tmp / "seed" / ARCHIVE_NAME))
        write_ben(tmp / "v1" / "patches", recs, recs[0].product + ".SAFE")
        lists = write_lists(tmp / "v1" / "lists", {"train": [r.name for r in recs]})
        inputs = {"l2a": [prod], "v1": [tmp / "v1" / "patches"]}
        times: dict = {v[0]: [] for v in VARIANTS}
        kept: dict = {}
        defaults = patch_ingest.BLOCK, products.ROWS_PER_CALL
        runs = 0
        for _ in range(args.rounds):
            for label, kind, method, group in VARIANTS:
                patch_ingest.BLOCK = group if kind == "v1" and group else defaults[0]
                products.ROWS_PER_CALL = group if kind == "l2a" and group else defaults[1]
                runs += 1  # a fresh folder each build: a finished one would be reused (the grouping is no option)
                cfg = BuildConfig(out_dir=str(tmp / f"out{runs}"), upsampling=method,
                                  clc=clc if kind == "l2a" else [], official_lists=str(lists) if kind == "v1" else None,
                                  sr_model=args.model if method == "dsen2" else "default", progress=False)
                t = time.perf_counter()
                m = build(inputs[kind], cfg, workers=1)
                times[label].append(time.perf_counter() - t)
                kept[label] = m["patches"]
        patch_ingest.BLOCK, products.ROWS_PER_CALL = defaults
    print(f"one synthetic {args.tile_m // 1000} km tile ({len(recs)} patches), 1 worker, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, auto precision: {resolve_precision('cpu', 'auto')}; DSen2 model "
          f"{args.model} ({' x '.join(map(str, SIZES[args.model]))}); {args.rounds} rounds, median")
    print("| build | patches | s (each round) | s per 1,000 patches | / bilinear of the same input |\n|---|---:|---:|---:|---:|")
    base = {}
    for label, kind, method, _ in VARIANTS:
        s = statistics.median(times[label])
        if method == "bilinear":
            base[kind] = s
        each = ", ".join(f"{t:.2f}" for t in times[label])
        print(f"| {label} | {kept[label]} | {each} | {1000 * s / max(kept[label], 1):.1f} | {s / base[kind]:.2f} |")


if __name__ == "__main__":
    main()
