"""Cross-scene quality of the DSen2 recipe: k-fold over scenes, every figure on scenes the fold's
networks never saw (not in training, not in validation).

    python benchmarks/sr_crossval.py train  [--folds 4] [--out runs/sr/cv]   # k trainings
    python benchmarks/sr_crossval.py report [--out runs/sr/cv]               # sr-eval per fold, pooled table
    python benchmarks/sr_crossval.py report --adapt 100                      # the same, DSen2 adapted per piece
    python benchmarks/sr_crossval.py final  [--out runs/sr/cv]               # the same recipe on every scene:
                                                                              # the shipped weights

Inputs: every real source in ../shared/fixtures (the L1C crop, the L2A patches and mosaics,
the v1 patch folders) and synthetic products made here (``--synth``, 12 km, seeded). Scenes
are keyed as ``sr_lab.scenes`` does (one acquisition = one scene, whatever its
form) and dealt round-robin into folds within each kind (L1C, L2A, synthetic), so every fold
tests real and synthetic scenes. Fold i trains ``sr-train --exclude-scenes <fold i>`` (its own
validation scenes held out of the rest) and is judged by ``sr-eval`` on fold i alone.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bigearth_cli.cli import main as cli  # noqa: E402
from dataset_builder.sr import SIZES  # noqa: E402  (the shipped network sizes, blocks x features)
from sr_lab import scenes as scenes_mod  # noqa: E402

SHARED = ROOT.parent / "shared" / "fixtures"
REAL = [SHARED / "sentinel2-crops", SHARED / "sentinel2-patches", SHARED / "bigearthnet-v1"]
# the recipe under test (and of the shipped weights): see benchmarks/RESULTS.md
RECIPE = ["--batch2", "32", "--batch6", "16", "--crop2", "32", "--crop6", "48", "--lr", "5e-4", "--steps-per-epoch", "100",
          "--no-progress"]
STORAGE = {"default": "float32", "paper": "float16"}  # the paper model's fp16 file keeps the wheel small


def recipe(args) -> list[str]:
    """RECIPE with the network size and training arithmetic of ``args``."""
    return [*RECIPE, "--blocks", str(args.blocks), "--features", str(args.features), "--amp", args.amp,
            "--epochs2", str(args.epochs2), "--epochs6", str(args.epochs6)]


def runs(out: Path, args) -> Path:
    """The folder of one configuration's runs: ``out`` itself for the default recipe (the shipped
    weights' folds), ``out/<blocks>x<features>[-bf16]`` for the others, sharing ``out``'s inputs."""
    if (args.blocks, args.features, args.amp) == (*SIZES["default"], "none"):
        return out
    return out / f"{args.blocks}x{args.features}{'-' + args.amp if args.amp != 'none' else ''}"


def inputs(out: Path, n_synth: int) -> list[Path]:
    from dataset_builder.synth import write_default_set
    real = [p for p in REAL if p.exists()]
    if not real:
        sys.exit(f"no real data at {SHARED}")
    synth = out / "products"
    have = sorted(synth.glob("*.SAFE"))
    if len(have) < n_synth:
        have = write_default_set(synth, n_synth, 12_000, seed=11)  # clouds and snow: bright scenes too
    return scenes_mod.expand(real) + sorted(have)[:n_synth]


def folds_of(paths: list[Path], k: int) -> list[list[str]]:
    keyed = {}
    for p in paths:
        _, key, kind = scenes_mod.read_piece(p)
        keyed.setdefault(kind, set()).add(key)
    folds = [[] for _ in range(k)]
    i = 0
    for kind in sorted(keyed):
        for key in sorted(keyed[kind]):
            folds[i % k].append(key)
            i += 1
    return folds


def train(args) -> None:
    out = Path(args.out)
    paths = inputs(out, args.synth)
    folds = folds_of(paths, args.folds)
    (out / "folds.json").write_text(json.dumps({"folds": folds, "inputs": [str(p) for p in paths]}, indent=1))
    for i, keys in enumerate(folds):
        run = runs(out, args) / f"fold{i}"
        if i not in args.only or (run / "dsen2.npz").exists():
            continue
        t0 = time.time()
        rc = cli(["sr-train", *map(str, paths), "--out", str(run), "--exclude-scenes", ",".join(keys), *recipe(args),
                  "--resume-if-present"])
        print(f"fold {i}: rc {rc}, {time.time() - t0:.0f} s", flush=True)


def final(args) -> None:
    """The recipe the folds validated, trained on every scene (its own validation scenes held out):
    what ships as dataset_builder/sr/weights/dsen2_default.npz."""
    out = Path(args.out)
    paths = inputs(out, args.synth)
    t0 = time.time()
    rc = cli(["sr-train", *map(str, paths), "--out", str(runs(out, args) / "final"), *recipe(args),
              "--storage", STORAGE[args.size], "--resume-if-present"])
    print(f"final: rc {rc}, {time.time() - t0:.0f} s", flush=True)


def report(args) -> None:
    out = Path(args.out)
    doc = json.loads((out / "folds.json").read_text())
    by_key = {}
    for p in map(Path, doc["inputs"]):
        by_key.setdefault(scenes_mod.read_piece(p)[1], []).append(p)
    tag = ("" if args.precision == "fp32" else f"_{args.precision}") + (f"_adapt{args.adapt}" if args.adapt else "")
    sub = "eval" + tag
    base = runs(out, args)
    done = [i for i in range(len(doc["folds"])) if i in args.only and (base / f"fold{i}" / "dsen2.npz").exists()]
    for i, keys in enumerate(doc["folds"]):
        ev = base / f"fold{i}" / sub
        if i not in done or (ev / "sr_eval.json").exists():
            continue
        paths = [p for k in keys for p in by_key[k]]
        t0 = time.time()
        cli(["sr-eval", *map(str, paths), "--sr-weights", str(base / f"fold{i}" / "dsen2.npz"), "--out", str(ev),
             "--methods", "bilinear,bicubic,dsen2", "--no-figures", "--sr-precision", args.precision,
             "--sr-adapt", str(args.adapt)])
        print(f"fold {i}: sr-eval {time.time() - t0:.0f} s", flush=True)
    from sr_lab.evaluate import merge_reports
    merged = merge_reports([json.loads((base / f"fold{i}" / sub / "sr_eval.json").read_text())
                            for i in done])
    stem = "crossval" + tag
    if len(done) < len(doc["folds"]):
        stem += "_folds" + "".join(map(str, done))
    (base / f"{stem}.json").write_text(json.dumps(merged, indent=1))
    from sr_lab.evaluate import scene_markdown
    md = scene_markdown(merged)
    (base / f"{stem}.md").write_text(md)
    print(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=("train", "report", "final"))
    p.add_argument("--out", default="runs/sr/cv")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--synth", type=int, default=8, help="synthetic products (12 km) beside the real data")
    p.add_argument("--epochs2", type=int, default=15, help="2x epochs of 100 steps")
    p.add_argument("--epochs6", type=int, default=6, help="6x epochs of 100 steps")
    p.add_argument("--size", choices=tuple(SIZES), default="default",
                   help="the network size: default (6 blocks x 32 features) or paper (6 x 128); --blocks/--features override")
    p.add_argument("--blocks", type=int, default=None, help="residual blocks (default: those of --size)")
    p.add_argument("--features", type=int, default=None, help="features (default: those of --size)")
    p.add_argument("--amp", default="none", choices=("none", "bf16"),
                   help="train/final: sr-train's --amp (bf16 halves a CPU step where the CPU has AVX512-BF16)")
    p.add_argument("--only", default=None, help="comma-separated fold numbers to train or report (default: all)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="report: DSen2's arithmetic")
    p.add_argument("--adapt", type=int, default=0, help="report: DSen2 fine-tuned per piece for this many steps")
    a = p.parse_args()
    blocks, features = SIZES[a.size]
    a.blocks = blocks if a.blocks is None else a.blocks
    a.features = features if a.features is None else a.features
    a.only = set(range(a.folds)) if a.only is None else {int(i) for i in a.only.split(",")}
    {"train": train, "report": report, "final": final}[a.stage](a)


if __name__ == "__main__":
    main()
