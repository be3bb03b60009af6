"""DSen2 on a CUDA device, per full Sentinel-2 tile (10,980 x 10,980 px at 10 m), in fp32 and bf16,
for every shipped model (``--sr-model default`` and ``paper``), with and without adaptation to
the tile (``--sr-adapt 100``, in bf16, the GPU's ``auto``), and its output against the CPU's: the rows ``benchmarks/gpu.sh``
records.

The bands are a smooth synthetic scene of the tile's size (the timing does not depend on the
values; DSen2's tiling, batches, guard and output assembly are what ``build --sr-device cuda``
runs). The comparison with the CPU is on one 1,200 px window (the CPU would take minutes on the
whole tile): the largest difference in DN, fp32 GPU against fp32 CPU and bf16 GPU against fp32 GPU.

    python benchmarks/gpu_dsen2.py [--side 10980 --window 1200]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dataset_builder import upsample


def scene(side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b10, b20, b60) float32 reflectance x 10000 of a smooth random scene of ``side`` 10 m pixels."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(300, 3000, (12, side // 60 + 2, side // 60 + 2)).astype(np.float32)
    t = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], size=(side, side), mode="bicubic",
                                        align_corners=False)[0].clamp_(1, 10000).numpy()
    b10, b20 = t[:4], t[4:10, ::2, ::2].copy()
    return np.ascontiguousarray(b10), b20, t[10:, ::6, ::6].copy()


def timed(up, bands) -> tuple[float, np.ndarray]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = up(*bands)
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=10_980, help="tile side in 10 m pixels (a multiple of 6)")
    ap.add_argument("--window", type=int, default=1_200, help="side of the window compared with the CPU")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_dsen2: no CUDA device here: nothing measured")
        return
    name = torch.cuda.get_device_name(0)
    tile = scene(args.side)
    from dataset_builder.products import ADAPT_WINDOW
    from dataset_builder.sr.weights import MODELS
    # what a build adapts on: 2 x 2 windows of ADAPT_WINDOW px spread over the tile (products.tile_pieces)
    starts = [round((args.side - ADAPT_WINDOW) * (i + 0.5) / 2) // 36 * 36 for i in range(2)]
    pieces = [tuple(b[:, r // f:(r + ADAPT_WINDOW) // f, c // f:(c + ADAPT_WINDOW) // f] for b, f in zip(tile, (1, 2, 6)))
              for r in starts for c in starts]
    rows = []
    small = tuple(b[:, :600 // f, :600 // f] for b, f in zip(tile, (1, 2, 6)))
    for model in (m for m in MODELS if MODELS[m].exists()):
        for precision, steps in (("fp32", 0), ("bf16", 0), ("bf16", 100)):  # adaptation in the GPU's default
            up = upsample.get("dsen2", device="cuda", precision=precision, model=model, adapt=steps)
            timed(up, small)  # warm-up: kernels chosen, weights moved
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            scene_up = upsample.for_scene(up, lambda: pieces)
            adapt_s = time.perf_counter() - t0
            seconds, _ = timed(scene_up, tile)
            rows.append((model, precision, steps, adapt_s if steps else 0.0, seconds,
                         args.side * args.side / seconds / 1e6))
    w = args.window
    win = (tile[0][:, :w, :w], tile[1][:, :w // 2, :w // 2], tile[2][:, :w // 6, :w // 6])
    cpu = upsample.get("dsen2", device="cpu", precision="fp32")(*win)
    g32 = upsample.get("dsen2", device="cuda", precision="fp32")(*win)
    g16 = upsample.get("dsen2", device="cuda", precision="bf16")(*win)
    print(f"DSen2 (shipped weights, guard on), {name}, torch {torch.__version__}, tile {args.side} x {args.side} px")
    print("| model | precision | adapt steps | adaptation s | s per full tile | MP/s |\n|---|---|---|---|---|---|")
    for model, precision, steps, adapt_s, seconds, mps in rows:
        print(f"| {model} | {precision} | {steps} | {adapt_s:.1f} | {seconds:.1f} | {mps:.1f} |")
    print(f"window {w} x {w}: max |GPU fp32 - CPU fp32| = {float(np.abs(g32 - cpu).max()):.3f} DN, "
          f"max |GPU bf16 - GPU fp32| = {float(np.abs(g16 - g32).max()):.2f} DN, "
          f"mean |bf16 - fp32| = {float(np.abs(g16 - g32).mean()):.3f} DN")


if __name__ == "__main__":
    main()
