"""DSen2 on one BigEarthNet patch with its context margin (the v1 and v2 ingests): the networks
over the whole window (patch + the halo's 42 px on every side, what the ingests ran before) against
the networks over the patch and their reach only (``region``, what they run now), side by side,
fp32 and bf16, with the largest difference between the two outputs (0: bit-identical).

    python benchmarks/dsen2_context.py [--repeat 5] [--threads 1] [--model default|paper]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_builder.sr import SIZES  # noqa: E402
from dataset_builder.sr.infer import DSen2  # noqa: E402


def window(side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth random reflectances (the networks' cost does not depend on the values)."""
    rng = np.random.default_rng(seed)

    def cube(c: int, f: int) -> np.ndarray:
        n = side // f
        a = rng.normal(size=(c, n, n)).cumsum(1).cumsum(2)
        return ((a - a.min()) / (np.ptp(a) + 1e-9) * 3000 + 200).astype(np.float32)

    return cube(4, 1), cube(6, 2), cube(2, 6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each; the median is reported")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a build worker uses 1)")
    ap.add_argument("--model", default="default", choices=tuple(SIZES), help="the shipped weights (--sr-model)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("| precision | networks over | s per patch (median) | speed-up | max abs difference |\n|---|---|---:|---:|---:|")
    for precision in ("fp32", "bf16"):
        up = DSen2(precision=precision, model=args.model)
        m, p = 6 * up.halo, 120
        cubes = window(p + 2 * m)
        times: dict = {"the whole window": [], "the patch and their reach": []}
        outs = {}
        for _ in range(args.repeat):  # interleaved: a drift in the machine's load touches both alike
            for name, region in (("the whole window", None), ("the patch and their reach", (m, m + p, m, m + p))):
                t = time.perf_counter()
                out = up(*cubes, region=region)
                times[name].append(time.perf_counter() - t)
                outs[name] = out[:, m:m + p, m:m + p]
        whole = statistics.median(times["the whole window"])
        diff = float(np.abs(outs["the whole window"] - outs["the patch and their reach"]).max())
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"| {precision} | {name} | {med:.3f} | {whole / med:.2f}x | {diff if name != 'the whole window' else ''} |")


if __name__ == "__main__":
    main()
