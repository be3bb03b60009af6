"""The main job on the embedded default, from products to per-class results.

    synthesize -> build (HDF5 archive) -> shards -> train (2 ranks, Horovod) -> evaluate (test)
    -> the paper's Table 2 and Table 3 layouts, beside the label-frequency baseline

Every artefact lands under ``--out`` (``products/``, ``dataset/``, ``shards/``, ``train/``,
``eval/``). A second run reuses what is done: the products when their settings are unchanged,
the build and the shards through their own content fingerprints, the training when its
checkpoint finished the same run on the same archive (an unfinished one resumes), the
evaluation when it scored this checkpoint on these shards.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bigearth import __version__
from bigearth.files import read_json, sha256_file, write_text

STAGES = 5

# The shortened recipe of the demo: what learns visibly in a few minutes on 2 CPU cores. ResNet-50
# does not (measured: micro-F1 0.39-0.45 on 198 synthetic patches after 6 epochs, at the
# label-frequency baseline); a ResNet-18 with one block per stage does.
DEMO_TRAIN = {"arch": "resnet18", "layers": "1,1,1,1", "epochs": 16, "batch_size": 16, "lr": 0.05,
              "warmup_epochs": 1.0, "milestones": "13", "mixup_alpha": 0.0, "dropout": 0.2}


def stage(i: int, text: str) -> float:
    print(f"\n[{i}/{STAGES}] {text}", flush=True)
    return time.perf_counter()


def done(t0: float, what: str) -> None:
    print(f"      {what} ({time.perf_counter() - t0:.0f} s)", flush=True)


def splits_missing(products: int, fractions, eval_split: str) -> list[str]:
    """The splits the demo needs (train, validation, the evaluated one) that the tiles of its first
    ``products`` default products do not give."""
    from dataset_builder.products import tile_split
    from dataset_builder.tiles import DEFAULT_SCENES
    have = {tile_split(DEFAULT_SCENES[i % len(DEFAULT_SCENES)][0], fractions) for i in range(products)}
    return [s for s in dict.fromkeys(("train", "validation", eval_split)) if s not in have]


def wall_seconds() -> float:
    """Seconds since this process started (the interpreter and imports included), from the
    kernel's record of the process; where there is none, since this module was imported."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


# --------------------------------------------------------------------------- 1. products

def synthesize(args, products_dir: Path) -> list[Path]:
    """The default products; reused when the folder holds those of the same settings."""
    from dataset_builder.synth import write_default_set
    settings = {"products": args.products, "tile_size_m": args.tile_size_m, "seed": args.seed,
                "cloud_cover": args.cloud_cover, "snow_cover": args.snow_cover, "nodata_cover": args.nodata_cover,
                "truth": args.truth, "version": __version__}
    marker = products_dir / ".synth.json"
    if marker.exists():
        try:
            prev = json.loads(marker.read_text())
        except (OSError, ValueError):
            prev = None
        if isinstance(prev, dict) and prev.get("settings") == settings \
                and all((products_dir / name).is_dir() for name in prev.get("products", [])):
            print(f"      reused {len(prev['products'])} products in {products_dir} (same settings)")
            return [products_dir / name for name in prev["products"]]
    marker.unlink(missing_ok=True)  # the folder is being rewritten: no marker until it is whole
    paths = write_default_set(products_dir, args.products, args.tile_size_m, args.seed, cloud_cover=args.cloud_cover,
                              snow_cover=args.snow_cover, nodata_cover=args.nodata_cover, write_truth=args.truth)
    write_text(marker, json.dumps({"settings": settings, "products": [p.name for p in paths]}, indent=1))
    return paths


# --------------------------------------------------------------------------- 4. training

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(ranks: int, engine: str, launch_one: bool = False) -> tuple[str, list[str]]:
    """(engine, command prefix) for ``ranks`` processes on this machine: horovodrun (gloo) for
    Horovod, torchrun for DDP; Horovod falls back to DDP, saying so, where it is not built. One
    rank runs as a plain process unless ``launch_one`` (to time the engine's own overhead)."""
    bindir = Path(sys.executable).parent
    if ranks == 1 and not launch_one:
        return "none", [sys.executable]
    if engine == "horovod":
        if importlib.util.find_spec("horovod") is not None and (bindir / "horovodrun").exists():
            return "horovod", [str(bindir / "horovodrun"), "-np", str(ranks), "-H", f"localhost:{ranks}", "--gloo",
                               sys.executable]
        print("      Horovod is not installed in this environment (bash scripts/build_horovod.sh builds it): "
              "the same run with torch.distributed (DDP) instead", flush=True)
    return "ddp", [str(bindir / "torchrun"), "--nnodes", "1", "--nproc_per_node", str(ranks),
                   "--master_port", str(_free_port())]


def train_args(args) -> dict:
    return {"arch": args.arch, "layers": args.layers, "epochs": args.epochs, "batch_size": args.batch_size,
            "lr": args.lr, "warmup_epochs": args.warmup_epochs, "milestones": args.milestones,
            "mixup_alpha": args.mixup_alpha, "dropout": args.dropout, "seed": args.seed}


def as_flags(options: dict) -> list[str]:
    """``{"batch_size": 16}`` -> ``["--batch-size", "16"]`` (None: left to the trainer's default)."""
    return [a for k, v in options.items() if v is not None for a in (f"--{k.replace('_', '-')}", str(v))]


def same_options(saved: dict, options: dict) -> bool:
    """Whether a checkpoint's options (as the trainer parsed and saved them: a tuple of
    milestones, floats) are the demo's ``options`` (as given: "13", 0.05), compared after the
    trainer's own parser has read the demo's."""
    from reference_train.train import get_args_parser
    wanted = vars(get_args_parser().parse_args(["--data", "-", "--output-dir", "-", *as_flags(options)]))
    return all(saved.get(k) == wanted[k] for k in options)


def finished_run(run_dir: Path, archive_sha: str, options: dict) -> str:
    """'done', 'resume' or 'new' for the checkpoint in ``run_dir``: a run of other settings or
    on another archive is set aside (renamed), never resumed or reused."""
    from bigearth.errors import InputError
    from reference_train.checkpoint import CHECKPOINT, read_checkpoint
    ckpt = run_dir / CHECKPOINT
    if not ckpt.exists():
        return "new"
    try:
        state = read_checkpoint(ckpt)
    except InputError as e:
        print(f"      {e}: starting over")
        state = None
    same = state is not None and (state.get("data") or {}).get("archive_sha256") == archive_sha \
        and same_options(state["args"], options)
    if not same:
        old = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%dT%H%M%S')}")
        run_dir.rename(old)
        print(f"      the run in {run_dir} was of other settings or data: moved to {old}, starting over")
        return "new"
    return "done" if int(state["epoch"]) >= options["epochs"] else "resume"


def train(args, shards_dir: Path, run_dir: Path, archive_sha: str) -> str:
    wanted = train_args(args)
    state = finished_run(run_dir, archive_sha, wanted)
    if state == "done":
        print(f"      reused the finished run in {run_dir} ({args.epochs} epochs, same settings and archive)")
        return "reused"
    engine, prefix = launcher(args.ranks, args.train_engine)
    cmd = [*prefix, "-m", "reference_train.train", "--engine", engine, "--data", str(shards_dir),
           "--output-dir", str(run_dir), *(["--resume"] if state == "resume" else []), "--val-split", "validation",
           "--print-freq", "0", *as_flags(wanted)]
    print(f"      {engine if engine != 'none' else 'one process'}: {' '.join(cmd[:8])} ...", flush=True)
    r = subprocess.run(cmd)
    if r.returncode != 0:
        from bigearth.errors import EnvironmentFailure
        raise EnvironmentFailure(f"training ended with exit status {r.returncode} ({run_dir}; rerun the demo to resume)")
    return engine


# --------------------------------------------------------------------------- 5. evaluation

def label_frequency_baseline(archive_path: Path, split: str = "test") -> tuple[dict, str]:
    """Micro P/R/F1 on ``split`` of the baseline that predicts, for every patch, each class
    present in more than half of the training patches (the training labels are read from the
    archive); with its description."""
    import h5py
    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support
    with h5py.File(archive_path, "r") as f:
        splits = f["split"].asstr()[:]
        y = f["classes"][:].astype(np.int64)
    train, test = y[splits == "train"], y[splits == split]
    guess = (train.mean(axis=0) > 0.5).astype(np.int64)
    pred = np.broadcast_to(guess, test.shape)
    p, r, f1, _ = precision_recall_fscore_support(test, pred, average="micro", zero_division=0)
    return ({"precision": float(p), "recall": float(r), "f1": float(f1)},
            f"every patch labelled with the {int(guess.sum())} classes present in > 50 % of the training patches")


def evaluate(args, shards_dir: Path, run_dir: Path, eval_dir: Path) -> dict:
    """Score the checkpoint on the test split (reused when this checkpoint was scored on these
    shards already)."""
    from reference_train import evaluate as ev
    from reference_train.checkpoint import CHECKPOINT
    from shards.index import INDEX_NAME
    ckpt = run_dir / CHECKPOINT
    report_path = eval_dir / "report.json"
    if report_path.exists():
        try:
            prev = json.loads(report_path.read_text())
            c = prev.get("checkpoint", {})
            if c.get("sha256") == sha256_file(ckpt) and c.get("data_sha256") == sha256_file(shards_dir / INDEX_NAME) \
                    and c.get("split") == args.eval_split and (eval_dir / ev.PREDICTIONS).exists():
                print(f"      reused {report_path} (this checkpoint, these shards)")
                return prev
        except (OSError, ValueError, AttributeError):
            pass
    ev_args = ev.get_args_parser().parse_args(["--checkpoint", str(ckpt), "--data", str(shards_dir), "--split",
                                               args.eval_split, "--out", str(eval_dir), "--quiet"])
    ev.main(ev_args)
    return read_json(report_path, "evaluation report")


def run(args) -> int:
    """The whole chain; returns the exit status."""
    from dataset_builder.build import ARCHIVE_NAME, build
    from shards.writer import write_shards
    from .configs import build_config
    from .summaries import print_shards, print_summary
    from reference_train import evaluate as ev

    out = Path(args.out)
    products_dir, dataset_dir, shards_dir = out / "products", out / "dataset", out / "shards"
    run_dir, eval_dir = out / "train", out / "eval"
    missing = splits_missing(args.products, args.split_fractions, args.eval_split)
    if missing:  # known from the tiles alone: say it before minutes of building
        print(f"error: --products {args.products}: their tiles give no patch to split(s) {missing} "
              f"(splits are tile-disjoint, by a hash of the tile id, with --split-fractions "
              f"{','.join(f'{x:g}' for x in args.split_fractions)}); use --products 5 or more (5 tiles), "
              f"or other --split-fractions", file=sys.stderr)
        return 1

    t = stage(1, f"synthesize {args.products} Level-2A products ({args.tile_size_m / 1000:g} km tiles) -> {products_dir}")
    products = synthesize(args, products_dir)
    done(t, f"{len(products)} products")

    t = stage(2, f"build the archive ({args.upsampling} super-resolution) -> {dataset_dir}")
    args.clc = [str(products_dir)]
    cfg = build_config(args)
    cfg.out_dir = str(dataset_dir)
    manifest = build(products, cfg, workers=args.workers, engine=args.engine, wait=args.wait)
    if manifest is None:  # a non-zero MPI rank of the build
        return 0
    print_summary(manifest, dataset_dir)
    done(t, f"{manifest['patches']} patches")
    if manifest["tiles_failed"]:
        print(f"{len(manifest['tiles_failed'])} input(s) failed; the demo stops here (see {dataset_dir / 'manifest.json'})")
        return 1
    missing = [s for s in ("train", "validation", args.eval_split) if not manifest["patches_per_split"].get(s)]
    if missing:
        print(f"no patch in split(s) {missing}: more products (--products) or other --split-fractions are needed")
        return 1

    t = stage(3, f"write WebDataset shards -> {shards_dir}")
    index = write_shards(dataset_dir / ARCHIVE_NAME, shards_dir, args.shard_size, args.shard_seed,
                         workers=args.shard_workers, progress=not args.no_progress)
    print_shards(index, shards_dir)
    done(t, "shards written")

    archive_sha = index.get("source", {}).get("sha256")
    t = stage(4, f"train {args.arch}{' (layers ' + args.layers + ')' if args.layers else ''}, {args.epochs} epochs, "
                 f"{args.ranks} rank(s) x batch {args.batch_size} -> {run_dir}")
    engine = train(args, shards_dir, run_dir, archive_sha)
    done(t, f"trained ({engine})")

    t = stage(5, f"evaluate on the {args.eval_split} split -> {eval_dir}")
    reports = evaluate(args, shards_dir, run_dir, eval_dir)
    base, how = label_frequency_baseline(dataset_dir / ARCHIVE_NAME, args.eval_split)
    done(t, "evaluated")

    print()
    print(ev.tables_text(reports, "43", baseline=(base, how)))
    print(f"\nplots: {run_dir / 'curves.png'}  {eval_dir / 'f1_43.png'}  {eval_dir / 'f1_19.png'}")
    print(f"tables: {eval_dir / 'per_class_43.md'}  {eval_dir / 'per_class_19.md'}  "
          f"predictions: {eval_dir / ev.PREDICTIONS}")
    print(f"demo finished in {wall_seconds():.0f} s (wall time of this command); everything is under {out}")
    return 0
