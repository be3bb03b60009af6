"""Balancing products by expected kept work instead of patch count (Algorithm 1's input).

Every full Sentinel-2 tile has the same 8,281 grid patches, so dealing products by patch count
degenerates to name order. The builder now deals them by expected work: decoding (per grid
patch) plus the per-kept-patch work, with the kept share estimated from the product's own
metadata (its no-data, cloud, cirrus, shadow and snow percentages; ``dataset_builder.tasks``).

This script synthesizes products whose cloud cover ranges from clear to mostly cloudy, measures
each product's build time alone (one worker), then, for several worker counts, the makespan of
each deal computed from those measured times (a worker's time is the sum of its products'):
by patch count (the old input), by expected work (the new one), and the bound no deal can beat
(max of the mean load and the longest product). With ``--real`` it also runs the two-worker
build under both deals and reports their wall times.

    python benchmarks/balance.py --work /tmp/bench_balance --upsampling dsen2 --real
"""
from __future__ import annotations

import argparse
import glob
import shutil
import time
from pathlib import Path

from dataset_builder import engines
from dataset_builder.build import BuildConfig, build
from dataset_builder.schedule import serpentine
from dataset_builder.synth import DEFAULT_SCENES, SynthConfig, write_product
from dataset_builder.tasks import plan_tasks


def makespan(plan, seconds: dict) -> float:
    return max(sum(seconds[t.id] for t in w) for w in plan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/bench_balance")
    ap.add_argument("--products", type=int, default=10)
    ap.add_argument("--tile-size-m", type=int, default=12_000)
    ap.add_argument("--upsampling", default="dsen2")
    ap.add_argument("--workers", default="2,3,4")
    ap.add_argument("--real", action="store_true", help="also time the 2-worker build under both deals")
    args = ap.parse_args()
    work = Path(args.work)
    pdir = work / "products"
    products = []
    for i in range(args.products):
        tile, date, mission, baseline = DEFAULT_SCENES[i % len(DEFAULT_SCENES)]
        cloud = 0.75 * i / max(1, args.products - 1)  # clear to mostly cloudy
        date = date[:6] + f"{int(date[6:8]) + i // len(DEFAULT_SCENES):02d}" + date[8:]
        products.append(write_product(SynthConfig(tile=tile, date=date, mission=mission, baseline=baseline,
                                                  tile_size_m=args.tile_size_m, seed=i, cloud_cover=cloud,
                                                  snow_cover=0.02), pdir))
    clc = sorted(glob.glob(str(pdir / "CLC_*.tif")))
    cfg = BuildConfig(out_dir=str(work / "plan"), clc=clc, upsampling=args.upsampling, progress=False)
    tasks, _, _ = plan_tasks(products, cfg)
    seconds, kept = {}, {}
    for t in tasks:  # each product alone, one worker: its own cost
        out = work / "alone" / t.id
        shutil.rmtree(out, ignore_errors=True)
        m = build([t.source.path], BuildConfig(out_dir=str(out), clc=clc, upsampling=args.upsampling, progress=False))
        seconds[t.id], kept[t.id] = m["tiles"][t.id]["seconds_total"], m["tiles"][t.id]["kept"]
    print(f"{len(tasks)} products of {args.tile_size_m / 1000:g} km, {args.upsampling}; measured alone:")
    print("| product | cloud (metadata) % | expected kept | kept | seconds |\n|---|---:|---:|---:|---:|")
    for t in tasks:
        q = t.source.quality
        cl = sum(q.get(k, 0) for k in ("MEDIUM_PROBA_CLOUDS_PERCENTAGE", "HIGH_PROBA_CLOUDS_PERCENTAGE"))
        print(f"| {t.id[:44]} | {cl:.1f} | {t.source.expected_kept_share() * t.count:.0f} | {kept[t.id]} | "
              f"{seconds[t.id]:.2f} |")
    print("\n| workers | by patch count (s) | by expected work (s) | gain | bound (s) |\n|---:|---:|---:|---:|---:|")
    total = sum(seconds.values())
    for w in (int(v) for v in args.workers.split(",")):
        by_count = makespan(serpentine(tasks, [t.count for t in tasks], w), seconds)
        by_work = makespan(serpentine(tasks, [t.work for t in tasks], w), seconds)
        bound = max(total / w, max(seconds.values()))
        print(f"| {w} | {by_count:.2f} | {by_work:.2f} | {by_count / by_work:.2f}x | {bound:.2f} |")
    if args.real:
        print("\nreal 2-worker builds (wall s, whole build):")
        for label, key in (("by patch count", "count"), ("by expected work", "work")):
            real = engines.serpentine

            def deal(items, counts, n, _key=key):
                return real(items, [getattr(t, _key) for t in items], n)
            engines.serpentine = deal
            try:
                out = work / f"real_{key}"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                build(products, BuildConfig(out_dir=str(out), clc=clc, upsampling=args.upsampling, progress=False),
                      workers=2)
                print(f"  {label}: {time.perf_counter() - t0:.1f} s")
            finally:
                engines.serpentine = real


if __name__ == "__main__":
    main()
