"""The super-resolution trade in one picture: RMSE / bicubic against milliseconds per patch.

    python benchmarks/sr_tradeoff.py [--cv runs/sr/cv] [--fold 0] [--plot benchmarks/figures/sr_tradeoff.png]
    python benchmarks/sr_tradeoff.py --peer-only --json peer.json      # s2super alone, in its own process
    python benchmarks/sr_tradeoff.py --no-peer --with-rows peer.json   # the rest, s2super's rows added

after ``sr_crossval.py train --only 0`` (and ``report --only 0``) for each network size (default;
``--blocks 6 --features 64 --amp bf16``; ``--size paper --amp bf16``) and ``report --adapt 100
--only 0`` for the default. Quality: each configuration's pooled RMSE / bicubic on the fold's
scenes, which none of the fold's networks saw (read from the fold's ``sr_eval.json``; s2super, when
it is installed, is evaluated here on the same scenes). Cost: each method's time on one 12 km
synthetic tile's bands (1,200 x 1,200 px, 100 patches), as a build calls it (``up(b10, b20, b60)``,
guard on, the default ``auto`` precision), best of ``--repeat``, per 120 x 120 patch; adaptation's
cost is its time per tile spread over a full Sentinel-2 tile's 8,281 patches (it fine-tunes on a
fixed number of windows, whatever the tile's size). One run, side by side; s2super (TensorFlow)
and torch's training in one process crashed here, so s2super can be measured in a run of its own
(``--peer-only``) whose rows the main run adds (``--with-rows``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataset_builder import upsample  # noqa: E402
from sr_lab import evaluate as ev, scenes as scenes_mod  # noqa: E402

NO_PEER = False  # --no-peer: TensorFlow and torch training in one process crashed here (SIGSEGV)
FULL_TILE_PATCHES = 91 * 91  # a 109.8 km Sentinel-2 tile on the 1.2 km grid
_RUNS = re.compile(r"^(\d+)x(\d+)(-bf16)?$")  # sr_crossval.py's folder of a configuration's runs


def networks(cv: Path, fold: int) -> dict[str, str]:
    """label -> runs folder under ``cv`` (``""``: the default recipe's, ``cv`` itself) of every
    network size trained on the fold: the default and the paper size are named so."""
    out = {}
    if (cv / f"fold{fold}" / "dsen2.npz").exists():
        out["dsen2 6x32 (default)"] = ""
    for d in sorted(cv.iterdir(), key=lambda d: d.name):
        m = _RUNS.match(d.name)
        if m and (d / f"fold{fold}" / "dsen2.npz").exists():
            size = f"{m[1]}x{m[2]}"
            out[f"dsen2 {size}" + (" (paper)" if size == "6x128" else "") + (", bf16-trained" if m[3] else "")] = d.name
    return out


def quality(cv: Path, fold: int, products: list[Path]) -> dict:
    """label -> {'2x': ratio, '6x': ratio} on the fold's scenes, for every run that was reported."""
    out = {}
    base = json.loads((cv / f"fold{fold}" / "eval" / "sr_eval.json").read_text())["pooled"]
    for m in ("bilinear", "bicubic"):
        out[m] = {p: base[p]["methods"][m].get("ratio_to_bicubic", 1.0) for p in base}  # bicubic: 1 by definition
    for label, sub in networks(cv, fold).items():
        for tag, suffix in (("", "eval"), (" adapted 100", "eval_adapt100")):
            f = cv / sub / f"fold{fold}" / suffix / "sr_eval.json"
            if f.exists():
                pool = json.loads(f.read_text())["pooled"]
                out[label + tag] = {p: pool[p]["methods"]["dsen2"]["ratio_to_bicubic"] for p in pool}
    peer = s2super()
    if peer is not None:
        doc = json.loads((cv / "folds.json").read_text())
        by_key: dict = {}
        for path in map(Path, doc["inputs"]):
            by_key.setdefault(scenes_mod.read_piece(path)[1], []).append(path)
        scene_list = scenes_mod.load([q for k in doc["folds"][fold] for q in by_key[k]])
        report, _ = ev.evaluate(scene_list, ["bicubic", "s2super"])
        pool = ev.pooled(report)
        out["s2super"] = {"2x": pool["2x"]["methods"]["s2super"]["ratio_to_bicubic"]}  # 60 m: not sharpened
    return out


def s2super():
    """s2super's upsampler (benchmarks/sr_peer.py), registered, or None when it is not installed."""
    import importlib.util
    if NO_PEER or importlib.util.find_spec("s2super") is None:
        return None
    from sr_peer import S2Super
    upsample.register("s2super", lambda **_: S2Super())
    return S2Super


def cost(cv: Path, fold: int, product: Path, repeat: int, peer_only: bool = False) -> dict:
    """label -> ms per patch on the tile's bands (and, for adaptation, the seconds per tile);
    ``peer_only``: s2super's alone."""
    from dataset_builder.sr import adapt
    piece = scenes_mod.load([product])[0].pieces[0]
    b10, b20, b60 = (piece.cubes[k] for k in ("im10", "im20", "im60"))
    patches = b10.shape[1] * b10.shape[2] / 120 ** 2

    from dsen2 import timed  # benchmarks/dsen2.py: a warm-up, then the best of ``repeat``

    def best(fn) -> float:
        return timed(fn, repeat)

    ups = {"bilinear": upsample.get("bilinear"), "bicubic": upsample.get("bicubic")}
    for label, sub in ({} if peer_only else networks(cv, fold)).items():
        w = cv / sub / f"fold{fold}" / "dsen2.npz"
        if w.exists():
            ups[label] = upsample.get("dsen2", weights=str(w))
    if s2super() is not None:
        ups["s2super"] = upsample.get("s2super")
    if peer_only:
        ups = {k: v for k, v in ups.items() if k == "s2super"}
    out = {}
    for label, up in ups.items():
        s = best(lambda: up(b10, b20, b60))
        out[label] = {"ms_per_patch": 1000 * s / patches, "s_per_tile_1200": s}
        print(f"{label}: {out[label]['ms_per_patch']:.1f} ms per patch", flush=True)
        if "(default)" in label or "(paper)" in label:  # the shipped sizes: what --sr-adapt costs with them
            nets = up.nets
            t0 = time.perf_counter()
            adapt.adapt(nets, [(b10, b20, b60)], adapt.DEFAULT_STEPS)
            s_adapt = time.perf_counter() - t0
            extra = 1000 * s_adapt / FULL_TILE_PATCHES
            out[label + " adapted 100"] = {"ms_per_patch": out[label]["ms_per_patch"] + extra, "adapt_s_per_tile": s_adapt}
            print(f"{label} adapted: +{s_adapt:.1f} s per tile, +{extra:.2f} ms per patch of a full tile", flush=True)
    return out


def plot(rows: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, proto in zip(axes, ("2x", "6x")):
        for label, r in rows.items():
            if proto not in r["ratio"]:
                continue
            x, y = r["ms_per_patch"], r["ratio"][proto]
            marked = "default" in label or "paper" in label
            ax.scatter([x], [y], s=70 if marked else 35, marker="*" if marked else "o",
                       color="tab:red" if "paper" in label else "tab:blue" if label.startswith("dsen2") else "tab:gray",
                       alpha=0.6 if "adapted" in label else 1.0, zorder=3)
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("ms per 120 x 120 patch (this CPU, auto precision, guard on)")
        ax.set_ylabel("RMSE / bicubic (lower is better)")
        ax.set_title(f"{proto}: held-out scenes of one fold")
        ax.grid(alpha=0.3)
    fig.suptitle("Super-resolution: quality against cost")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cv", default="runs/sr/cv", help="the cross-validation's folder (sr_crossval.py --out)")
    p.add_argument("--fold", type=int, default=0, help="the fold whose held-out scenes give the quality")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per method (best counts)")
    p.add_argument("--plot", default="benchmarks/figures/sr_tradeoff.png", help="the figure")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--no-peer", action="store_true", help="leave s2super out even when it is installed")
    p.add_argument("--peer-only", action="store_true", help="s2super alone (its rows to --json; no figure)")
    p.add_argument("--with-rows", default=None, help="add the rows of an earlier run's --json (e.g. --peer-only's)")
    a = p.parse_args()
    global NO_PEER
    NO_PEER = a.no_peer
    if a.peer_only and (a.no_peer or not a.json or s2super() is None):
        p.error("--peer-only needs s2super installed, --json and no --no-peer")
    cv = Path(a.cv)
    products = sorted((cv / "products").glob("*.SAFE"))
    q = quality(cv, a.fold, products)
    c = cost(cv, a.fold, products[0], a.repeat, peer_only=a.peer_only)
    rows = {k: {"ratio": q[k], **c[k]} for k in c if k in q}
    if a.peer_only:
        Path(a.json).write_text(json.dumps(rows, indent=1))
        print(f"wrote {a.json}: {', '.join(rows)}")
        return
    if a.with_rows:
        rows.update(json.loads(Path(a.with_rows).read_text()))
    print("| method | ms per patch | 2x RMSE / bicubic | 6x RMSE / bicubic |")
    print("|---|---:|---:|---:|")
    for k, r in sorted(rows.items(), key=lambda kv: kv[1]["ms_per_patch"]):
        print(f"| {k} | {r['ms_per_patch']:.1f} | {r['ratio'].get('2x', float('nan')):.3f} | "
              f"{r['ratio'].get('6x', float('nan')):.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    plot(rows, Path(a.plot))
    print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
