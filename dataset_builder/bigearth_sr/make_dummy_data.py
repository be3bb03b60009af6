"""Writes dummy_data/bigearth_sr.h5: one patch per split from small synthetic products.

Run from the repository root: ``python -m dataset_builder.bigearth_sr.make_dummy_data``.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import h5py
import numpy as np

from bigearth.record import ARRAYS
from dataset_builder import archive
from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build
from dataset_builder.synth import SynthConfig, write_product

HERE = Path(__file__).parent
# one real tile per split (tile-disjoint splits by hash: train, validation, test)
TILES = (("T33UUP", "20170613T101031"), ("T29UPU", "20170617T113321"), ("T34UCF", "20180412T094031"))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for tile, date in TILES:
            write_product(SynthConfig(tile=tile, date=date, tile_size_m=2400, seed=1, cloud_cover=0, snow_cover=0), tmp)
        cfg = BuildConfig(out_dir=str(tmp / "out"), clc=[str(p) for p in tmp.glob("CLC_*.tif")], progress=False)
        build(sorted(tmp.glob("*.SAFE")), cfg)
        recs = {}
        for r in archive.iter_records(tmp / "out" / ARCHIVE_NAME):
            recs.setdefault(r.split, r)
        assert sorted(recs) == ["test", "train", "validation"], sorted(recs)
        out = HERE / "dummy_data" / ARCHIVE_NAME
        w = archive.PartWriter(out, compression="gzip")
        chosen = [recs[s] for s in ("train", "validation", "test")]
        w.append({k: np.stack([getattr(r, k) for r in chosen]) for k in ARRAYS}, [r.meta() for r in chosen])
        w.close()
        with h5py.File(out, "r+") as f:
            archive.describe(f, cfg.public())
            f.attrs["compression"] = "gzip"
        print(out, out.stat().st_size, "bytes:", [r.name for r in chosen], json.dumps(cfg.public())[:60])


if __name__ == "__main__":
    main()
