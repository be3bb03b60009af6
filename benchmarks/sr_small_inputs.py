"""Does DSen2 itself break on small inputs, or does Wald's protocol stop measuring it there?

On one synthetic product no weights saw (its generator seed differs from every training
product's), the 6x protocol (every band degraded 6x, the 60 m bands super-resolved back) is run
twice on the same windows of the degraded scene, side by side:
  alone  - each window cut out and super-resolved on its own (what sr-eval did on a 120 px
           patch: the window is all the network and the guard see; its edges are mirrored);
  inside - the whole degraded scene super-resolved once, the same window cut from the result
           (the same pixels with their real surroundings).
Bicubic is run alone as the reference. Where DSen2 alone is far worse than DSen2 inside on the
same pixels, what fails is the lack of context, not the network; a network that broke would
give non-finite or runaway values whatever the context.

    python benchmarks/sr_small_inputs.py --work /tmp/sr_small [--sides 2,3,4,6,8,12,16,24]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

from bigearth.record import BANDS_60M


def rmse(a, b) -> float:
    return float(np.sqrt(((a.astype(np.float64) - b) ** 2).mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/bigearth_sr_small")
    ap.add_argument("--sides", default="2,3,4,6,8,12,16,24", help="60 m input sides (px) of the windows")
    ap.add_argument("--seed", type=int, default=91, help="generator seed of the unseen product")
    ap.add_argument("--tile-size-m", type=int, default=24_000)
    args = ap.parse_args()

    from dataset_builder import upsample
    from sr_lab import scenes, wald
    from sr_lab.evaluate import seen_scenes
    from dataset_builder.synth import SynthConfig, write_product

    work = Path(args.work)
    safe = write_product(SynthConfig(tile="T34UCF", date="20190917T094031", tile_size_m=args.tile_size_m,
                                     seed=args.seed), work)
    piece, key, _ = scenes.read_piece(safe)
    ups = {m: upsample.get(m) for m in ("bicubic", "dsen2")}
    assert key not in seen_scenes(["dsen2"], {}), f"{key} was seen by the shipped weights; pick another --seed"

    sc = wald.trim(piece.cubes, 36)
    low = {k: wald.degrade(sc[k], b, 6, "gauss") for k, b in wald.CUBES}  # the degraded scene (10 m grid = 60 m)
    ref = sc["im60"]  # the original 60 m bands: the target on the degraded 10 m grid
    idx = [upsample.BANDS_SR.index(b) for b in BANDS_60M]
    inside = ups["dsen2"](low["im10"], low["im20"], low["im60"])[idx]
    h, w = ref.shape[1:]
    rows = []
    for side60 in map(int, args.sides.split(",")):
        L = side60 * 6  # window side on the degraded 10 m grid
        errs = {"bicubic": [], "dsen2_alone": [], "dsen2_inside": []}
        finite = True
        # windows tiled over the scene's interior, away from its own border
        for r in range(36, h - L - 36 + 1, max(L, 36)):
            for c in range(36, w - L - 36 + 1, max(L, 36)):
                cut = {"im10": low["im10"][:, r:r + L, c:c + L], "im20": low["im20"][:, r // 2:(r + L) // 2, c // 2:(c + L) // 2],
                       "im60": low["im60"][:, r // 6:(r + L) // 6, c // 6:(c + L) // 6]}
                t = ref[:, r:r + L, c:c + L]
                for m in ("bicubic", "dsen2"):
                    est = ups[m](cut["im10"], cut["im20"], cut["im60"])[idx]
                    finite &= bool(np.isfinite(est).all())
                    errs["bicubic" if m == "bicubic" else "dsen2_alone"].append(rmse(est, t))
                errs["dsen2_inside"].append(rmse(inside[:, r:r + L, c:c + L], t))
        pooled = {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in errs.items()}
        rows.append({"side60": side60, "side10": L, "windows": len(errs["bicubic"]), "finite": finite, **pooled})
        print(rows[-1], flush=True)

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; scene {key} (unseen), 6x protocol, "
          f"windows tiled over its interior")
    print("| 60 m input px | degraded 10 m px | windows | bicubic RMSE | DSen2 alone | DSen2 inside | alone / inside "
          "| alone / bicubic | all finite |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['side60']} | {r['side10']} | {r['windows']} | {r['bicubic']:.1f} | {r['dsen2_alone']:.1f} | "
              f"{r['dsen2_inside']:.1f} | {r['dsen2_alone'] / r['dsen2_inside']:.2f} | "
              f"{r['dsen2_alone'] / r['bicubic']:.2f} | {r['finite']} |")
    (work / "result.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
