"""Writes dummy_data/: raw inputs, three tiny synthetic Level-2A products (2.4 km tiles, 2 x 2
patches each, one tile per split) with their CORINE rasters, so TFDS's builder test runs the
whole path: SAFE parsing, labels, screening, every upsampling method, archive, examples.

Run from the repository root: ``python -m dataset_builder.bigearth_sr.make_dummy_data``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from dataset_builder.synth import SynthConfig, write_product

HERE = Path(__file__).parent
# one real tile per split (tile-disjoint splits by hash: train, validation, test)
TILES = (("T33UUP", "20170613T101031"), ("T29UPU", "20170617T113321"), ("T34UCF", "20180412T094031"))


def main() -> None:
    out = HERE / "dummy_data"
    shutil.rmtree(out, ignore_errors=True)
    for tile, date in TILES:
        p = write_product(SynthConfig(tile=tile, date=date, tile_size_m=2400, seed=1, cloud_cover=0, snow_cover=0), out)
        print(p.name, sum(f.stat().st_size for f in p.rglob("*") if f.is_file()), "bytes")


if __name__ == "__main__":
    main()
