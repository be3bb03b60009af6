"""``bigearth-sr sr-eval``: super-resolution quality of any registered method.

Wald's protocol at reduced scale (every band degraded by 2, or by 6, super-resolved back and
compared with the original 20 m, or 60 m, bands), and at full resolution where a 10 m truth of
the coarse bands exists (synthetic products written with ``--truth``). Metrics per band and
overall (RMSE, PSNR, SRE, SAM); a table on the terminal, JSON, Markdown and CSV files, and a
figure per protocol: a band triple as colour composite of the input, bicubic, DSen2 (or the
last method) and the reference, with the error maps.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import rasterio

from bigearth.errors import InputError
from bigearth.files import atomic_path, write_text
from bigearth.options import choice_list, float_in, torch_device
from bigearth.record import BANDS_20M, BANDS_60M, BANDS_SUPER

from .. import upsample
from . import metrics, wald

VIEW = 240  # side of the figure's window, in pixels of the reference grid
FIGURE_BANDS = {"2x": ("B11", "B8A", "B05"), "6x": ("B09", "B01", "B01"), "full": ("B11", "B8A", "B05")}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="MAT/HDF5 crop (im10/im20/im60), a Level-2A product, or a synthetic product")
    p.add_argument("--methods", type=choice_list(upsample.available()), default="bilinear,bicubic,dsen2",
                   help=f"comma-separated upsampling methods, of {','.join(upsample.available())}")
    p.add_argument("--truth", default=None, help="10 m truth of all 12 bands (GeoTIFF, BANDS_SUPER order); "
                                                 "default: truth_10m.tif inside a synthetic product, if there")
    p.add_argument("--east", type=float_in(0.0, 1.0, lo_open=True, hi_open=True), default=None,
                   help="evaluate only the east share of the columns (what sr-train --val-east holds out)")
    p.add_argument("--degradation", choices=wald.MODES, default="gauss", help="Wald degradation")
    p.add_argument("--sr-weights", default=None, help="dsen2 weights (default: shipped)")
    p.add_argument("--sr-device", type=torch_device, default="cpu")
    p.add_argument("--out", default=None, help="folder for sr_eval.json/.md/.csv and the figures")


def _truth_path(args, inp: Path) -> Path | None:
    if args.truth:
        return Path(args.truth)
    cand = inp / "truth_10m.tif"
    return cand if inp.is_dir() and cand.exists() else None


def run_method(up, low: dict) -> np.ndarray:
    return up(low["im10"], low["im20"], low["im60"])


def protocols(scene: dict, truth: np.ndarray | None, mode: str):
    """(name, input cubes, reference (bands, H, W), band ids) for each protocol that applies."""
    sc = wald.trim(scene)
    for name, s, ref, bands in (("2x", 2, sc["im20"], BANDS_20M), ("6x", 6, sc["im60"], BANDS_60M)):
        low = {k: wald.degrade(sc[k], b, s, mode) for k, b in wald.CUBES}
        yield name, low, ref, bands
    if truth is not None:
        h, w = sc["im10"].shape[1:]
        ref = np.stack([truth[BANDS_SUPER.index(b), :h, :w] for b in upsample.BANDS_SR])
        yield "full", sc, ref, upsample.BANDS_SR


def evaluate(scene: dict, methods: list[str], truth=None, mode="gauss", options: dict | None = None):
    """{protocol: {method: metrics.summary}} and the images for the figures."""
    ups = {m: upsample.get(m, **((options or {}) if m == "dsen2" else {})) for m in methods}
    results, images = {}, {}
    for name, low, ref, bands in protocols(scene, truth, mode):
        idx = [upsample.BANDS_SR.index(b) for b in bands]
        results[name], images[name] = {}, {"reference": ref, "bands": bands, "input": low}
        for m, up in ups.items():
            est = run_method(up, low)[idx]
            results[name][m] = metrics.summary(est, ref, bands)
            images[name][m] = est
    return results, images


def read_inputs(args) -> tuple[dict, np.ndarray | None]:
    inp = Path(args.input)
    scene = wald.read_scene(inp)
    truth = None
    tp = _truth_path(args, inp)
    if tp is not None:
        try:
            with rasterio.open(tp) as ds:
                truth = ds.read().astype(np.float32)
        except rasterio.errors.RasterioIOError as e:
            raise InputError(tp, f"cannot read the truth raster ({e})") from None
        if truth.shape[0] != len(BANDS_SUPER) or truth.shape[1:] != scene["im10"].shape[1:]:
            raise InputError(tp, f"truth has shape {truth.shape}, expected (12, {scene['im10'].shape[1]}, {scene['im10'].shape[2]})")
    if args.east is not None:
        if not 0 < args.east < 1:
            raise ValueError("--east must be in (0, 1)")
        w = wald.trim(scene)["im10"].shape[2]
        scene = wald.split_east(scene, args.east)[1]
        if truth is not None:
            truth = truth[:, :, w - scene["im10"].shape[2]:w]
    return scene, truth


def markdown(results: dict) -> str:
    lines = []
    for proto, by_method in results.items():
        bands = list(next(iter(by_method.values()))["bands"])
        lines += [f"### {proto}", "", "| method | RMSE | PSNR dB | SRE dB | SAM ° | " + " | ".join(f"{b} RMSE" for b in bands) + " |",
                  "|---" * (5 + len(bands)) + "|"]
        for m, r in by_method.items():
            o = r["overall"]
            lines.append(f"| {m} | {o['rmse']:.1f} | {o['psnr']:.2f} | {o['sre']:.2f} | {o['sam']:.3f} | "
                         + " | ".join(f"{r['bands'][b]['rmse']:.1f}" for b in bands) + " |")
        lines.append("")
    return "\n".join(lines)


def figure(images: dict, proto: str, path: Path, methods: list[str]) -> None:
    """Colour composite of a band triple: input (nearest), bicubic, the last method, reference, errors."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    im = dict(images[proto])
    bands = im["bands"]
    # a central window of at most VIEW px, so the detail is visible and the file small
    h, w = im["reference"].shape[1:]
    # (multiples of 12, so the window starts on a pixel of every coarser grid shown)
    n = min(VIEW, h, w) // 12 * 12
    r0, c0 = (h - n) // 24 * 12, (w - n) // 24 * 12
    for key, a in list(im.items()):
        if isinstance(a, np.ndarray):
            im[key] = a[:, r0:r0 + n, c0:c0 + n]
    im["input"] = {k: v[:, r0 * v.shape[1] // h:(r0 + n) * v.shape[1] // h, c0 * v.shape[2] // w:(c0 + n) * v.shape[2] // w]
                   for k, v in im["input"].items()}
    triple = [b for b in FIGURE_BANDS[proto] if b in bands] or list(bands[:3])
    sel = [list(bands).index(b) for b in triple]
    while len(sel) < 3:
        sel.append(sel[-1])
    ref = im["reference"][sel]
    lo, hi = np.percentile(ref, 1), np.percentile(ref, 99)

    def rgb(a):
        return np.clip(a - lo, 0, None).transpose(1, 2, 0) / max(hi - lo, 1)

    inp, h = im["input"], ref.shape[1]
    low = []
    for i in sel:  # the coarse bands as the method got them, shown with nearest upsampling
        cube, names = (inp["im20"], BANDS_20M) if bands[i] in BANDS_20M else (inp["im60"], BANDS_60M)
        a = cube[names.index(bands[i])]
        f = h // a.shape[0]
        low.append(np.repeat(np.repeat(a, f, 0), f, 1))
    low = np.stack(low)
    shown = list(dict.fromkeys(m for m in ("bicubic", methods[-1]) if m in im))
    panels = [("input (nearest)", rgb(low))] + [(m, rgb(im[m][sel])) for m in shown] + [("reference", rgb(ref))]
    errs = [(f"|{m} - ref|", np.abs(im[m][sel] - ref).mean(0)) for m in shown]
    vmax = max(np.percentile(e, 99) for _, e in errs)
    fig, axes = plt.subplots(1, len(panels) + len(errs), figsize=(3.2 * (len(panels) + len(errs)), 3.4))
    for ax, (t, a) in zip(axes, panels):
        ax.imshow(np.clip(a, 0, 1), interpolation="nearest")
        ax.set_title(t, fontsize=9)
    for ax, (t, e) in zip(axes[len(panels):], errs):
        ax.imshow(e, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{t} (0–{vmax:.0f})", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{proto}: {'/'.join(triple)} as R/G/B", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(args) -> int:
    methods = args.methods
    scene, truth = read_inputs(args)
    results, images = evaluate(scene, methods, truth, args.degradation,
                               {"weights": args.sr_weights, "device": args.sr_device})
    md = markdown(results)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        doc = {"input": str(args.input), "east": args.east, "degradation": args.degradation, "results": results}
        write_text(out / "sr_eval.json", json.dumps(doc, indent=1))
        write_text(out / "sr_eval.md", md)
        with atomic_path(out / "sr_eval.csv") as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["protocol", "method", "band", "rmse", "psnr", "sre", "sam"])
                for proto, by_m in results.items():
                    for m, r in by_m.items():
                        for b, v in r["bands"].items():
                            w.writerow([proto, m, b, f"{v['rmse']:.3f}", f"{v['psnr']:.3f}", f"{v['sre']:.3f}", ""])
                        o = r["overall"]
                        w.writerow([proto, m, "all", f"{o['rmse']:.3f}", f"{o['psnr']:.3f}", f"{o['sre']:.3f}", f"{o['sam']:.4f}"])
        for proto in results:
            figure(images, proto, out / f"sr_eval_{proto}.png", methods)
        print(f"written to {out}")
    return 0
