"""DSen2 throughput, in one run: megapixels/s of the ``dsen2`` upsampler (tiled inference with
its bilinear inputs, stacking, tiling and conversion) next to the bare network forward passes on
the same pixels (inputs stacked beforehand, one whole-image call per network), for the shipped
weights and a DSen2 6x128 of random weights; then the builder's time per tile with
``--upsampling dsen2`` against ``bilinear`` on the same synthetic products.

    python benchmarks/dsen2.py [--size 1200] [--device cpu|cuda] [--builder-tile-m 12000]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dataset_builder.sr.infer import DSen2, net_input, resolve_precision
from dataset_builder.sr.model import DSen2Net, NetSpec
from dataset_builder.sr.weights import save_bundle


def timed(fn, repeat: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive caches, cuDNN autotuning
    best = float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def inference_rows(weights: str, size: int, device: str, precision: str, repeat: int) -> dict:
    # a smooth random scene (per-pixel noise is no image: trained weights leave the plausible
    # range on it, and the output check stops them; the time does not depend on the values)
    from gpu_dsen2 import scene
    b10, b20, b60 = scene(size)
    up = DSen2(weights, device=device, precision=precision)
    x2, x6 = (net_input(r, b10, b20, b60)[None].to(device) for r in (2, 6))
    amp = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)

    def bare():
        with torch.inference_mode(), amp:
            up.nets[2](x2)
            up.nets[6](x6)

    t_bare = timed(bare, repeat)
    t_tiled = timed(lambda: up(b10, b20, b60), repeat)
    mp = size * size / 1e6
    spec = up.nets[2].spec
    return {"model": f"{spec.blocks}x{spec.features}", "bare": mp / t_bare, "tiled": mp / t_tiled, "ratio": t_bare / t_tiled,
            "tile_s": t_tiled * (10980 / size) ** 2}


# (label, method, precision, guard, shipped model): the builder's variants, interleaved round by round
VARIANTS = (("bilinear", "bilinear", "auto", True, "default"), ("dsen2 (auto precision)", "dsen2", "auto", True, "default"),
            ("dsen2 fp32", "dsen2", "fp32", True, "default"), ("dsen2 auto, no guard", "dsen2", "auto", False, "default"),
            ("dsen2 --sr-model paper (auto)", "dsen2", "auto", True, "paper"))


def builder_rows(weights: str, tile_m: int, rounds: int = 2) -> list[tuple[str, float, int]]:
    from dataset_builder import upsample
    from dataset_builder.build import BuildConfig, build
    from dataset_builder.synth import SynthConfig, write_product
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prod = write_product(SynthConfig(tile_size_m=tile_m, seed=1), tmp / "products")
        clc = [str(p) for p in (tmp / "products").glob("CLC_*.tif")]
        for _ in range(rounds):
            for label, method, precision, guard, model in VARIANTS:
                # the unguarded variant is an upsampler option, not a build flag: registered here only
                # (shipped weights, auto precision; a 12 km build runs in this process)
                upsample.register("dsen2-noguard", lambda **_: DSen2(guard=False))
                name = method if guard else "dsen2-noguard"
                cfg = BuildConfig(out_dir=str(tmp / f"out_{len(rows)}"), upsampling=name, sr_precision=precision,
                                  sr_weights=weights if method == "dsen2" and model == "default" else None,
                                  sr_model=model if method == "dsen2" else "default", clc=clc, progress=False)
                t = time.perf_counter()
                m = build([prod], cfg)
                rows.append((label, time.perf_counter() - t, m["patches"]))
    return rows


def precision_row(size: int = 600) -> dict:
    """bf16 against fp32 on the same real-like input: how far the guarded outputs differ (DN)."""
    rng = np.random.default_rng(3)
    b10 = rng.uniform(200, 4000, (4, size, size)).astype(np.float32)
    b20 = rng.uniform(200, 4000, (6, size // 2, size // 2)).astype(np.float32)
    b60 = rng.uniform(200, 4000, (2, size // 6, size // 6)).astype(np.float32)
    a, b = (DSen2(precision=p)(b10, b20, b60) for p in ("fp32", "bf16"))
    d = (a.astype(np.float64) - b)
    return {"rms": float(np.sqrt((d ** 2).mean())), "max": float(np.abs(d).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1200, help="image side (10 m px) for the inference rows")
    ap.add_argument("--size-large", type=int, default=600, help="image side for DSen2 6x128 (slow on CPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--builder-tile-m", type=int, default=12_000, help="0: skip the builder rows")
    args = ap.parse_args()
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"device: {dev}; torch {torch.__version__}; precision {args.precision}")
    with tempfile.TemporaryDirectory() as tmp:
        from dataset_builder.sr.weights import MODELS
        big = MODELS["paper"]  # the shipped paper-size weights; random ones of that size if absent
        if not big.exists():
            torch.manual_seed(0)
            big = Path(tmp) / "dsen2_6x128.npz"
            save_bundle(big, {r: DSen2Net(NetSpec(r, 6, 128)) for r in (2, 6)}, {"provenance": {"benchmark": "random"}})
        print("| model | image px | bare forward MP/s | dsen2 upsampler MP/s | upsampler / bare | s per 10,980² tile |")
        print("|---|---|---|---|---|---|")
        for weights, size in ((None, args.size), (str(big), args.size_large if args.device == "cpu" else args.size)):
            r = inference_rows(weights, size, args.device, args.precision, args.repeat)
            print(f"| {r['model']} | {size}² | {r['bare']:.3f} | {r['tiled']:.3f} | **{r['ratio']:.2f}** | {r['tile_s']:.0f} |")
    if args.builder_tile_m:
        rows = builder_rows(None, args.builder_tile_m)
        base = {}
        print(f"\nbuilder, one synthetic {args.builder_tile_m // 1000} km tile, 1 worker (shipped weights for dsen2), "
              f"variants interleaved, {len(rows) // len(VARIANTS)} rounds; auto precision here: "
              f"{resolve_precision('cpu', 'auto')}")
        print("| upsampling | build s | patches | s per kept patch | / bilinear (same round) |")
        print("|---|---|---|---|---|")
        for i, (label, s, n) in enumerate(rows):
            if label == "bilinear":
                base = s
            print(f"| {label} | {s:.2f} | {n} | {s / max(n, 1):.4f} | {s / base:.2f} |")
        if resolve_precision("cpu", "auto") == "bf16":
            r = precision_row()
            print(f"\nbf16 vs fp32, guarded output on a 600 px random scene: RMS {r['rms']:.2f} DN, max {r['max']:.1f} DN")


if __name__ == "__main__":
    main()
