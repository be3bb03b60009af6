"""``bigearth-sr build <v1 folder> --official-lists … --dry-run`` on BigEarthNet v1's size: 590,326
patch folders (named as v1 names them, over 125 acquisitions) with official lists of the same
names, timed as a user runs it. The plan opens no folder (it reads the listing and the lists), so
the folders are made empty: what is measured is the listing, the names and the lists. Beside it,
for comparison, the build's own planning reads every label JSON: timed on ``--json-sample``
folders that hold one, and extrapolated.

    python benchmarks/plan_v1.py [--folders 590326] [--work /tmp/bench_plan_v1]
"""
from __future__ import annotations

import argparse
import bz2
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def names(n: int, acquisitions: int = 125) -> list[str]:
    """``n`` v1 patch names: acquisitions of ~n / 125 patches each on a 91-wide grid."""
    per = -(-n // acquisitions)
    out = []
    for a in range(acquisitions):
        day = 20170601 + a % 28
        prefix = f"S2{'AB'[a % 2]}_MSIL2A_{day}T{101031 + a:06d}"
        out += [f"{prefix}_{k % 91}_{k // 91}" for k in range(min(per, n - len(out)))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--folders", type=int, default=590_326, help="patch folders (BigEarthNet v1: 590,326)")
    ap.add_argument("--json-sample", type=int, default=2000, help="folders with a label JSON, read as the build does")
    ap.add_argument("--work", default="/tmp/bench_plan_v1", help="working folder (kept and reused)")
    args = ap.parse_args()
    work = Path(args.work)
    root, lists = work / "v1", work / "lists"
    all_names = names(args.folders)
    if not root.exists():
        t = time.perf_counter()
        tmp = work / "v1.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for n in all_names:
            os.makedirs(tmp / n, exist_ok=True)
        tmp.rename(root)
        lists.mkdir(exist_ok=True)
        k = len(all_names)
        for file, part in (("train", all_names[: k // 2]), ("val", all_names[k // 2: 3 * k // 4]),
                           ("test", all_names[3 * k // 4:]), ("patches_with_seasonal_snow", all_names[::50]),
                           ("patches_with_cloud_and_shadow", all_names[1::40])):
            (lists / f"{file}.csv.bz2").write_bytes(bz2.compress("\n".join(part).encode()))
        print(f"made {k} empty patch folders and the lists in {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    r = subprocess.run([str(BIN / "bigearth-sr"), "build", str(root), "--official-lists", str(lists),
                        "--out", str(work / "out"), "--upsampling", "bilinear", "--dry-run"],
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"error: the dry run exited {r.returncode}: {r.stderr.strip()}")
    print(r.stdout)

    # the build's own planning: one label JSON per folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dataset_builder.labels import read_label_json
    sample = work / "json_sample"
    if not sample.exists():
        for n in all_names[: args.json_sample]:
            (sample / n).mkdir(parents=True)
            (sample / n / f"{n}_labels_metadata.json").write_text(json.dumps({
                "labels": ["Pastures"], "coordinates": {"ulx": 0, "uly": 0, "lrx": 1200, "lry": -1200},
                "projection": "", "tile_source": "S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_20170613T101608",
                "acquisition_date": "2017-06-13 10:10:31"}))
    t = time.perf_counter()
    for n in all_names[: args.json_sample]:
        read_label_json(sample / n / f"{n}_labels_metadata.json")
    per_json = (time.perf_counter() - t) / args.json_sample
    print(f"| plan of {args.folders:,} v1 folders | seconds |\n|---|---:|\n"
          f"| `build --dry-run` (listing and lists; no label JSON opened) | {seconds:.1f} |\n"
          f"| reading one label JSON per folder, as the build's planning does (measured on {args.json_sample:,} "
          f"warm files, x {args.folders:,}) | {per_json * args.folders:.0f} |")


if __name__ == "__main__":
    main()
