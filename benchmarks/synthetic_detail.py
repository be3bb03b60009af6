"""How much detail the synthetic bands share, against real Sentinel-2 (issue: synthetic truth fair
to guided super-resolution). For each pair (10 m band ~ coarse band): the correlation of the
high-pass detail of the 10 m band block-averaged to the coarse grid with the coarse band's
(dataset_builder/sr/detail.py). Rows: the default synthetic products (clear sky) and the real
crop in ../shared/fixtures/sentinel2-crops/.

    python benchmarks/synthetic_detail.py [--tile-size-m 12000]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bigearth.record import BAND_RESOLUTION, BANDS_10M, BANDS_20M, BANDS_60M, BANDS_SUPER
from sr_lab.crop import read_mat
from dataset_builder.sr.detail import PAIRS, block_mean, pair_table
from dataset_builder.synth import DEFAULT_SCENES, SynthConfig, render_scene

CROP = Path(__file__).resolve().parents[1].parent / "shared/fixtures/sentinel2-crops/S2A_MSIL1C_20170527_T33UUB.mat"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tile-size-m", type=int, default=12_000)
    args = ap.parse_args()
    cols = [f"{a}~{b}" for a, b in PAIRS]
    print("| scene | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for tile, date, _, _ in DEFAULT_SCENES:
        truth, _, _ = render_scene(SynthConfig(tile=tile, date=date, tile_size_m=args.tile_size_m, cloud_cover=0, snow_cover=0))
        bands = {b: truth[i] if BAND_RESOLUTION[b] == 10 else block_mean(truth[i], BAND_RESOLUTION[b] // 10)
                 for i, b in enumerate(BANDS_SUPER)}
        t = pair_table(bands)
        print(f"| synthetic {tile} | " + " | ".join(f"{t[c]:.2f}" for c in cols) + " |")
    if CROP.exists():
        d = read_mat(CROP)
        bands = {**dict(zip(BANDS_10M, d["im10"])), **dict(zip(BANDS_20M, d["im20"])), **dict(zip(BANDS_60M, d["im60"]))}
        t = pair_table(bands)
        print("| **real crop T33UUB** | " + " | ".join(f"**{t[c]:.2f}**" for c in cols) + " |")


if __name__ == "__main__":
    main()
