"""Algorithm 1 of Sedona et al. 2019 on the real BigEarthNet v1 numbers: how evenly each way of
dealing the 125 products to workers spreads the patches.

The per-product patch counts come from the official lists (train, val, test, the snow and the
cloud/shadow lists, and the patches without a 19-class target: 590,326 names together), a
product being a patch name without its ``_<x>_<y>``. For each worker count the load imbalance
(most loaded worker / mean) of three deals:

* ``serpentine`` — what we implement for Algorithm 1 (``dataset_builder.schedule.serpentine``):
  products sorted by patch count, largest first, dealt in rows of n whose direction alternates;
* ``round-robin`` — products in name order, product i to worker i mod n (no balancing);
* ``greedy`` — largest first, each to the least-loaded worker so far (LPT, Graham 1969).

Usage: ``python benchmarks/algorithm1.py [--lists DIR] [--out DIR]``; writes ``algorithm1.md``
(the table) and ``algorithm1.png`` (the plot) into ``--out`` (default ``benchmarks/figures/``).
"""
from __future__ import annotations

import argparse
import bz2
import re
from collections import Counter
from pathlib import Path

from dataset_builder.schedule import DEALS

ROOT = Path(__file__).resolve().parents[1]
LISTS = ("train", "val", "test", "patches_with_seasonal_snow", "patches_with_cloud_and_shadow",
         "patches_with_no_19_class_targets")
WORKERS = (2, 4, 8, 16, 24, 32, 48, 64, 72, 96, 125)
PAPER_WORKERS = 72


def product_counts(lists_dir: Path) -> dict[str, int]:
    """Patches per product over all official lists (each name counted once)."""
    names: set[str] = set()
    for stem in LISTS:
        path = lists_dir / f"{stem}.csv.bz2"
        if not path.exists():
            raise SystemExit(f"{path}: missing (the official BigEarthNet v1 lists; see ../shared/fixtures/README.md)")
        names.update(line.strip().split(",")[0] for line in bz2.decompress(path.read_bytes()).decode().splitlines()
                     if line.strip())
    return dict(Counter(re.sub(r"_\d+_\d+$", "", n) for n in names))


def imbalance(plan: list[list[str]], counts: dict[str, int]) -> float:
    loads = [sum(counts[p] for p in w) for w in plan]
    return max(loads) / (sum(loads) / len(loads))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lists", default=str(ROOT.parent / "shared" / "fixtures" / "bigearthnet-lists"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "figures"))
    args = ap.parse_args()
    counts = product_counts(Path(args.lists))
    items = sorted(counts)
    sizes = [counts[p] for p in items]
    deals = DEALS
    rows = {n: {name: imbalance(f(items, sizes, n), counts) for name, f in deals.items()} for n in WORKERS}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"{sum(sizes):,} patches over {len(items)} products ({min(sizes):,} to {max(sizes):,} per product; "
             f"the largest alone is {max(sizes) / (sum(sizes) / PAPER_WORKERS):.2f}x a {PAPER_WORKERS}-worker mean).", "",
             "| workers | serpentine | round-robin | greedy (LPT) | lower bound |", "|---:|---:|---:|---:|---:|"]
    for n, r in rows.items():
        bound = max(max(sizes) / (sum(sizes) / n), 1.0)  # no deal beats the largest product, nor a perfect split
        mark = " (paper)" if n == PAPER_WORKERS else ""
        lines.append(f"| {n}{mark} | {r['serpentine']:.3f} | {r['round-robin']:.3f} | {r['greedy']:.3f} | {bound:.3f} |")
    (out / "algorithm1.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name in deals:
        ax.plot(WORKERS, [rows[n][name] for n in WORKERS], marker="o", label=name)
    ax.plot(WORKERS, [max(max(sizes) / (sum(sizes) / n), 1.0) for n in WORKERS], "k:", label="lower bound")
    ax.axvline(PAPER_WORKERS, color="grey", lw=0.8)
    ax.set_xlabel("workers")
    ax.set_ylabel("load imbalance (max / mean patches)")
    ax.set_title(f"Dealing the {len(items)} BigEarthNet v1 products to workers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "algorithm1.png", dpi=120)
    print(f"wrote {out / 'algorithm1.md'} and {out / 'algorithm1.png'}")


if __name__ == "__main__":
    main()
