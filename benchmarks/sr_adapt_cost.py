"""What adapting DSen2 to a scene costs (``--sr-adapt``), beside what super-resolving the scene
costs, measured side by side in one run on this machine.

    python benchmarks/sr_adapt_cost.py [--steps 100] [--repeat 3] [--json OUT]

Rows: the adaptation of both networks on what a full tile gives it (2 x 2 windows of 576 px,
``products.tile_pieces``) and on what one BigEarthNet acquisition gives it (16 pieces: 4
mosaics of 360 px and 12 patches, ``patch_ingest.scene_pieces``), each for ``--steps`` steps;
and, for scale, the guarded DSen2 on one 1,200 px window (100 patches) in the build's precision.
The adaptation cost does not grow with the tile: the pieces are bounded. Inputs are synthetic
reflectances (the cost depends on sizes, not values).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataset_builder import upsample  # noqa: E402
from dataset_builder.sr import adapt  # noqa: E402


def cube(rng, bands: int, side: int) -> np.ndarray:
    return rng.normal(1500, 300, (bands, side, side)).astype(np.float32)


def piece(rng, side: int):
    return cube(rng, 4, side), cube(rng, 6, side // 2), cube(rng, 2, side // 6)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=adapt.DEFAULT_STEPS)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    up = upsample.get("dsen2")
    nets = up.nets
    tile = [piece(rng, 576) for _ in range(4)]
    acquisition = [piece(rng, 360) for _ in range(4)] + [piece(rng, 120) for _ in range(12)]
    window = piece(rng, 1200)
    rows = {
        "adapt_tile_s": best(lambda: adapt.adapt(nets, tile, a.steps), a.repeat),
        "adapt_acquisition_s": best(lambda: adapt.adapt(nets, acquisition, a.steps), a.repeat),
        "dsen2_100_patches_s": best(lambda: up(*window), a.repeat),
    }
    rows.update(steps=a.steps, threads=torch.get_num_threads(), precision=up.precision,
                weights=up.provenance.get("files"))
    print(json.dumps(rows, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
