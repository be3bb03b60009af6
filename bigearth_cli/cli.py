"""``bigearth-sr``: one command, one subcommand per job."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bigearth import options
from bigearth.errors import run_command
from bigearth.options import HelpFormatter
from bigearth.record import SPLITS
from reference_train import train_args  # torch-free, as parsing needs (the trainer's flags, its stop line)

# Only what parsing needs is imported here, none of it torch or TensorFlow: `bigearth-sr --help`
# and every subcommand's --help answer at once; each command imports its work when it runs.


def _add_synth_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("synthetic products")
    from dataset_builder.tiles import DEFAULT_SCENES
    tiles = ", ".join(t for t, *_ in DEFAULT_SCENES)
    g.add_argument("--products", type=options.positive_int, default=4,
                   help=f"number of products, on the real tiles {tiles} in turn ({len(DEFAULT_SCENES)} tiles; "
                        f"further products revisit them 10 days later)")
    g.add_argument("--tile-size-m", type=options.tile_size_m, default=12_000,
                   help="tile side in metres, a multiple of 1200 (the real tiles are 109800)")
    g.add_argument("--seed", type=options.nonneg_int, default=0, help="random seed; the same seed writes the same products")
    g.add_argument("--cloud-cover", type=options.fraction, default=0.08, help="share of each tile under cloud")
    g.add_argument("--snow-cover", type=options.fraction, default=0.04, help="share of each tile under snow")
    g.add_argument("--nodata-cover", type=options.fraction, default=0.0, help="share of each tile outside the swath (SCL 0)")
    g.add_argument("--truth", action="store_true", help="also write the 10 m truth of all 12 bands (truth_10m.tif)")


def _add_build_args(p: argparse.ArgumentParser) -> None:
    from dataset_builder import archive, screening, upsample
    g = p.add_argument_group("build")
    g.add_argument("--out", required=True, help="output folder (archive, manifest.json, parts/)")
    g.add_argument("--clc", action="append", default=[],
                   help="CORINE Land Cover raster (any CRS; CLC codes or the official 1..44 grid codes); "
                        "repeatable, a folder means every .tif in it (default: none)")
    g.add_argument("--labels-json", default=None,
                   help="label products from BigEarthNet label JSONs in this folder (<name>/<name>_labels_metadata.json) "
                        "instead of a CORINE raster; patches without one are dropped as no_labels (default: none; "
                        "products need --clc or --labels-json, BigEarthNet folders carry their labels)")
    g.add_argument("--clc-values", choices=("auto", "codes", "grid"), default="auto",
                   help="how the CORINE raster stores classes (auto: grid codes when it is uint8)")
    g.add_argument("--label-res", type=int, default=20, choices=(10, 20, 30, 40, 60, 100, 120),
                   help="grid (m) on which the CORINE raster is resampled (nearest) to find the classes of a patch")
    g.add_argument("--upsampling", default="dsen2", choices=upsample.available(),
                   help="super-resolution of the 20 m and 60 m bands: dsen2 (the paper's method, Lanaras et al. 2018, "
                        "guarded: never worse than bicubic on held-out scenes; ~5x bilinear's build time on a CPU), "
                        "bilinear (the paper's control; the fast choice), bicubic")
    g.add_argument("--sr-weights", default=None,
                   help="dsen2 weights: a bundle (.npz, from sr-train or sr-convert), or the authors' two Keras files "
                        "joined by a comma (2x,6x) (default: the weights shipped with the package)")
    from dataset_builder.sr import SIZES, describe_models
    g.add_argument("--sr-model", default="default", choices=tuple(SIZES),
                   help=f"dsen2: which shipped weights, when --sr-weights is not given: {describe_models()} (blocks x "
                        f"features; docs/super-resolution.md) (default: default)")
    g.add_argument("--sr-device", type=options.torch_device, default="cpu", help="dsen2: torch device (cpu, cuda, cuda:1)")
    g.add_argument("--sr-precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="dsen2: arithmetic (auto: bf16 on a GPU and on CPUs with native bf16 support, such as "
                        "AVX512-BF16 or AMX, else fp32; fp32 is bit-exact across tilings)")
    g.add_argument("--sr-adapt", type=options.nonneg_int, default=0, metavar="STEPS",
                   help="dsen2: fine-tune the networks for STEPS steps on each tile's own bands (each acquisition's "
                        "patches for BigEarthNet folders) under Wald's protocol before super-resolving it; the adapted "
                        "weights serve that scene alone and their digest is in the manifest (0: off; 100 is a "
                        "typical count)")
    g.add_argument("--compression", default=archive.DEFAULT_COMPRESSION, choices=sorted(archive.COMPRESSIONS),
                   help="HDF5 filter for the patch arrays: blosc-lz4 (fast; readers `import hdf5plugin`), "
                        "blosc2-zstd (gzip's ratio, 3x faster), gzip (shuffle + deflate 1, no plugin needed), "
                        "lzf, none; measured in benchmarks/RESULTS.md")
    g.add_argument("--merge", default="copy", choices=("copy", "virtual"),
                   help="copy: one self-contained archive (chunks copied as compressed bytes); "
                        "virtual: an HDF5 virtual dataset over parts/")
    for key, default in screening.DEFAULT_THRESHOLDS.items():
        codes = ",".join(map(str, screening.SCL_CLASSES[key]))
        g.add_argument(f"--max-{key}", type=options.fraction, default=default,
                       help=f"drop a patch when more than this share of its SCL pixels is {key} (SCL {codes})")
    g.add_argument("--split-fractions", type=options.split_fractions, default="0.6,0.2,0.2",
                   help="train,validation,test shares for products (tile-disjoint, by a hash of the tile id)")
    g.add_argument("--min-label-share", type=options.fraction, default=0.0,
                   help="BigEarthNet v2 input: share of a patch's pixels a CORINE class of its reference map needs "
                        "to count as a 43-class label (0: any pixel, as the 19-class labels were made)")
    g.add_argument("--official-lists", default=None,
                   help="BigEarthNet v1 input: folder with the official lists (train/val/test, snow, cloud .csv[.bz2]) "
                        "(default: none: nothing is screened and every patch is in split 'none', said at the start)")
    g.add_argument("--workers", type=options.positive_int, default=None,
                   help="local worker processes, tiles dealt by Algorithm 1 (default: every usable core, as far as "
                        "the number of tiles, their expected work and the available memory allow; the manifest says why)")
    g.add_argument("--engine", choices=("local", "mpi"), default="local",
                   help="mpi: one worker per rank, run under mpirun -n N")
    g.add_argument("--strict", action="store_true", help="stop at the first bad input instead of recording it")
    g.add_argument("--wait", action="store_true",
                   help="when another run holds the output folder, wait for it instead of exiting")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--dry-run", action="store_true",
                   help="read only the inputs' metadata and print the plan (inputs, patches expected per split, "
                        "screening, disk needed against free, estimated time on this machine), then exit")


def cmd_synth(args) -> int:
    from dataset_builder.synth import write_default_set
    paths = write_default_set(args.out, args.products, args.tile_size_m, args.seed, cloud_cover=args.cloud_cover,
                              snow_cover=args.snow_cover, nodata_cover=args.nodata_cover, write_truth=args.truth)
    for p in paths:
        print(p)
    return 0


def cmd_build(args) -> int:
    from dataset_builder.build import build

    from .configs import build_config
    from .summaries import print_plan, print_summary
    cfg = build_config(args)
    if args.dry_run:
        from dataset_builder.plan import estimate, would_fail
        plan = estimate(args.inputs, cfg, args.workers)
        print_plan(plan, Path(args.out))
        why = would_fail(plan)
        if why:  # a script runs the plan first: its exit code says whether the build would go through
            print(f"the build would not go through: {'; '.join(why)}", file=sys.stderr, flush=True)
        return 1 if why else 0
    manifest = build(args.inputs, cfg, workers=args.workers, engine=args.engine, wait=args.wait)
    if manifest is None:  # a non-zero MPI rank
        return 0
    print_summary(manifest, Path(args.out))
    return 1 if manifest["tiles_failed"] or not manifest["patches"] else 0


UNCHECKED_HELP = ("accept an archive that carries no checksum attributes (built before archives carried them), "
                  "on purpose: its values cannot be checked (without it such an archive is refused)")
DEFAULT_SHARD_SIZE = "256MiB"  # shards.writer.DEFAULT_SHARD_BYTES, checked equal by the tests


def _add_shard_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("shards")
    g.add_argument("--shard-size", type=options.byte_size, default=DEFAULT_SHARD_SIZE,
                   help="target bytes per shard (e.g. 256MiB, 1GB); every shard of a split holds the same number of samples")
    g.add_argument("--shard-seed", type=options.nonneg_int, default=0, help="seed of the shuffle of each split's samples across tiles")
    g.add_argument("--shard-workers", type=options.positive_int, default=1, help="processes writing shards")


def cmd_shards(args) -> int:
    from shards.writer import write_shards

    from .summaries import print_shards
    index = write_shards(args.archive, args.out, args.shard_size, args.shard_seed, workers=args.shard_workers,
                         manifest_path=args.manifest, progress=not args.no_progress,
                         splits=args.splits, wait=args.wait, allow_unchecked=args.unchecked_archive,
                         select=args.select)
    print_shards(index, Path(args.out))
    return 0


def cmd_verify_shards(args) -> int:
    from shards.index import verify
    problems = verify(args.shards)
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_demo(args) -> int:
    """The project's main job on the embedded default (bigearth_cli/demo.py)."""
    from . import demo
    return demo.run(args)


def _add_demo_train_args(p: argparse.ArgumentParser) -> None:
    from .demo import DEMO_TRAIN
    g = p.add_argument_group("training and evaluation (the paper's recipe, shortened to learn in minutes on a CPU)")
    g.add_argument("--ranks", type=options.positive_int, default=2, help="training processes on this machine")
    g.add_argument("--train-engine", choices=("horovod", "ddp"), default="horovod",
                   help="horovod (horovodrun; falls back to ddp, saying so, where Horovod is not built) or ddp (torchrun)")
    g.add_argument("--arch", default=DEMO_TRAIN["arch"],
                   choices=("resnet18", "resnet34", "resnet50", "resnet50_v1", "resnet101"),
                   help="the paper's model is resnet50 (--arch resnet50 --layers ''), which does not visibly learn "
                        "on the demo's few hundred patches in a few epochs")
    g.add_argument("--layers", type=options.blocks_per_stage, default=DEMO_TRAIN["layers"], help="blocks per stage ('' for the architecture's own)")
    for key in ("epochs", "batch_size", "lr", "warmup_epochs", "milestones", "mixup_alpha", "dropout"):
        kind = {int: options.positive_int, float: float, str: str}[type(DEMO_TRAIN[key])]
        g.add_argument(f"--{key.replace('_', '-')}", type=kind, default=DEMO_TRAIN[key],
                       help={"batch_size": "images per rank", "lr": "peak learning rate (the paper scales 0.1 x k x n / 256)",
                             "mixup_alpha": "0: no mixup (the paper uses it; it slows learning on a tiny set)"}.get(
                                 key, "the demo's value"))
    g.add_argument("--eval-split", default="test", choices=("test", "validation"), help="split of Table 2 and 3")


DEMO_EPILOG = """scaling up:
  more data      --products 20 --tile-size-m 24000   (5 real tiles revisited; up to 400 patches per product)
  longer         --epochs 40 --milestones 30
  more ranks     --ranks 4                           (each rank takes cores / ranks threads)
  the paper      --arch resnet50 --layers '' --batch-size 64 --lr 0.1 --mixup-alpha 0.2 --dropout 0.5
  faster builds  --upsampling bilinear                (DSen2, the default, costs ~5x bilinear's build time on a CPU)
  real data      see docs/real-data.md (BigEarthNet v1 -> archive -> shards -> GPUs / SLURM)
"""


def cmd_sr_convert(args) -> int:
    from dataset_builder.sr.weights import convert
    from bigearth.files import sha256_file
    path = convert(args.keras, args.out)
    print(f"{path}  sha256 {sha256_file(path)}")
    return 0


def cmd_info(args) -> int:
    from dataset_builder import archive
    with archive.reading(args.archive) as f:
        n = f["name"].shape[0]
        splits = {}
        if "split" in f and n:
            import numpy as np
            names, counts = np.unique(f["split"].asstr()[:], return_counts=True)
            splits = dict(zip(names.tolist(), counts.tolist()))
        datasets = {k: {"dtype": str(f[k].dtype), "shape": list(f[k].shape),
                        "layout": f"virtual over {len(f[k].virtual_sources())} part(s)" if f[k].is_virtual
                        else f"chunks={f[k].chunks}"} for k in f}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                 for k, v in f.attrs.items()}
    cfg = json.loads(attrs["build_config"]) if attrs.get("build_config") else None
    if args.json:
        # stdout holds the JSON alone, so it parses: the verification inside it, the plot's line on stderr
        doc = {"archive": str(args.archive), "patches": n, "per_split": splits, "datasets": datasets,
               "attributes": {k: v for k, v in attrs.items() if k != "build_config"}, "build_config": cfg}
        if args.verify:
            report, manifest = _verify_report(args.archive, n, not args.no_progress, args.unchecked_archive)
            doc["verify"] = {**report, "manifest_checked": manifest is not None}
        if args.plot:
            from .show import catalogue_plot
            print(f"{catalogue_plot(args.archive, args.plot)}: the catalogue by status and split, and the drop reasons",
                  file=sys.stderr)
        print(json.dumps(doc, indent=1, default=str))
        return 1 if args.verify and doc["verify"]["problems"] else 0
    else:
        print(f"{args.archive}: {n} patches; merge={attrs.get('merge', '?')} compression={attrs.get('compression', '?')}")
        print(f"  checksums: {attrs.get('checksums', 'none (built before archives carried checksums)')}")
        if attrs.get("reading_note"):
            print(f"  reading: {attrs['reading_note']}")
        print("  per split:", splits)
        for k, d in datasets.items():
            print(f"  {k:12s} {d['dtype']:8s} {str(tuple(d['shape'])):22s} {d['layout']}")
        if cfg:
            for line in config_summary(cfg):
                print(f"  {line}")
            print("  (the whole build configuration and provenance: bigearth-sr info --json)")
    if args.plot:
        from .show import catalogue_plot
        print(f"{catalogue_plot(args.archive, args.plot)}: the catalogue by status and split, and the drop reasons")
    return _verify_archive(args.archive, n, not args.no_progress, args.unchecked_archive) if args.verify else 0


def config_summary(cfg: dict) -> list[str]:
    """A few lines a person reads: how the archive was made (the rest is in --json)."""
    up = cfg.get("upsampling", "?")
    sr = cfg.get("super_resolution") if isinstance(cfg.get("super_resolution"), dict) else {}
    files = sr.get("files") if isinstance(sr.get("files"), dict) else {}
    weights = ", ".join(f"{name} (sha256 {str(sha)[:12]}…)" for name, sha in files.items()) or cfg.get("sr_weights") \
        or "shipped"
    nets = sr.get("nets") if isinstance(sr.get("nets"), dict) else {}
    if nets:
        weights += "; nets " + ", ".join(f"{r}x {v.get('blocks')}x{v.get('features')}" for r, v in nets.items()
                                         if isinstance(v, dict))
    if isinstance(sr.get("adapt"), dict):
        weights += f"; adapted to each scene ({sr['adapt'].get('steps')} steps; digests in the manifest's tiles)"
    labels = (f"{len(cfg['clc'])} CORINE raster(s)" if cfg.get("clc") else
              f"label JSONs in {cfg['labels_json']}" if cfg.get("labels_json") else "the BigEarthNet inputs' own")
    lines = [f"super-resolution: {up}" + (f", weights {weights}, precision {sr.get('precision', cfg.get('sr_precision', '?'))}"
                                          if up == "dsen2" else ""),
             f"labels: {labels}; splits: " + ("official lists" if cfg.get("official_lists") else
                                               f"tile-disjoint {cfg.get('split_fractions', '?')} for products")]
    thresholds = cfg.get("thresholds")
    if isinstance(thresholds, dict):
        lines.append("screening (max share of SCL pixels): " + ", ".join(f"{k} {v}" for k, v in thresholds.items()))
    return lines


def _verify_report(path, n: int, progress: bool, allow_unchecked: bool = False) -> tuple[dict, dict | None]:
    """(``archive.verify``'s report, the manifest beside the archive or None): first the check every
    reader makes (one line when it fails, as shards and tfds say it), then every chunk read."""
    from tqdm import tqdm

    from dataset_builder import archive
    manifest = archive.check(path, allow_unchecked=allow_unchecked).manifest
    with tqdm(total=n, unit="patch", desc="verify", disable=not progress, leave=False) as bar:
        report = archive.verify(path, bar.update, allow_unchecked=allow_unchecked)
    return report, manifest


def _verify_archive(path, n: int, progress: bool, allow_unchecked: bool = False) -> int:
    """``info --verify``: every chunk of the ``n`` patches read (HDF5 checks its Fletcher-32), the
    descriptive values against meta_sha256, and the archive against the manifest beside it, if any."""
    report, manifest = _verify_report(path, n, progress, allow_unchecked)
    for p in report["problems"]:
        print(f"{path}: {p}")
    if report["unchecked"]:
        print(f"note: {', '.join(report['unchecked'])} carry no checksum (an archive built before archives carried "
              f"checksums): damage that still decodes cannot be seen there" + ("" if manifest else
              "; no manifest.json beside it either: rebuild it, or keep its manifest with it"))
    print(f"verify: {report['patches']} patches, every chunk read; "
          f"{'sha256 as manifest.json records; ' if manifest else ''}{len(report['problems'])} problem(s)")
    return 1 if report["problems"] else 0


def lazy(module: str):
    """The ``main(args)`` of ``module``, imported when the command runs (not when it is parsed)."""
    def run(args):
        import importlib
        return importlib.import_module(module).main(args)
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="bigearth-sr",
        description="BigEarthNet-style patches from Sentinel-2 Level-2A products, with all bands super-resolved to 10 m.",
        formatter_class=HelpFormatter)
    from bigearth import __version__
    parser.add_argument("--version", action="version", version=f"bigearth-sr {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("synth", help="write synthetic Level-2A products (real SAFE layout, JP2, SCL) and CORINE rasters",
                       formatter_class=HelpFormatter)
    p.add_argument("--out", required=True, help="folder for the .SAFE products and CLC_*.tif rasters")
    _add_synth_args(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("build", help="cut Level-2A products (.SAFE folders or .zip), BigEarthNet v1 patch folders or "
                                     "BigEarthNet v2 (reBEN) into the HDF5 archive",
                       formatter_class=HelpFormatter)
    p.add_argument("inputs", nargs="+", help="Level-2A products (.SAFE folders, .zip), the folder holding BigEarthNet v1 "
                                             "patch folders, or a BigEarthNet v2 (reBEN) folder (BigEarthNet-S2/, "
                                             "Reference_Maps/, metadata.parquet)")
    _add_build_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("demo", help="the main job on the embedded default: synthesize, build, shard, train with "
                                    "Horovod on 2 ranks, evaluate (Tables 2 and 3)",
                       formatter_class=HelpFormatter, epilog=DEMO_EPILOG)
    _add_synth_args(p)
    _add_build_args(p)
    _add_shard_args(p)
    _add_demo_train_args(p)
    p.set_defaults(func=cmd_demo, products=12)

    p = sub.add_parser("shards", help="write an archive's splits as WebDataset tar shards with an index.json",
                       formatter_class=HelpFormatter)
    p.add_argument("archive", help="bigearth_sr.h5")
    p.add_argument("--out", required=True, help="folder for the shards and index.json")
    p.add_argument("--manifest", default=None, help="the build's manifest.json (default: beside the archive; "
                                                    "without one the band statistics are computed)")
    p.add_argument("--splits", type=options.choice_list(SPLITS), default=None,
                   help=f"comma-separated splits to write, of {','.join(SPLITS)} (default: all)")
    p.add_argument("--select", default=None, metavar="FILE",
                   help="only these patches: a file of patch names, one a line, or a parquet with a name column "
                        "(a query of the build's patches.parquet); the index records the selection's digest "
                        "(default: every patch)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--wait", action="store_true", help="when another run holds --out, wait for it instead of exiting")
    p.add_argument("--unchecked-archive", action="store_true", help=UNCHECKED_HELP)
    _add_shard_args(p)
    p.set_defaults(func=cmd_shards)

    p = sub.add_parser("show", help="draw patches of an archive or shards (RGB; the 20 m bands native, bilinear and "
                                    "as built) and, for a build, its catalogue by status and split, into PNGs",
                       formatter_class=HelpFormatter)
    p.add_argument("source", help="an archive, the folder a build wrote, or a shards folder")
    p.add_argument("--out", default="show.png", help="the patches' PNG; for a build also <stem>-catalogue.png beside it")
    p.add_argument("--names", default=None, help="comma-separated patch names to draw (default: --count at random)")
    p.add_argument("--count", type=options.positive_int, default=4, help="patches drawn at random when --names is not given")
    p.add_argument("--seed", type=options.nonneg_int, default=0, help="seed of the random choice")
    p.add_argument("--split", choices=SPLITS, default=None, help="draw from this split only (default: any)")
    p.set_defaults(func=lazy("bigearth_cli.show"))

    p = sub.add_parser("verify-shards", help="check every shard's size and sha256 against index.json",
                       formatter_class=HelpFormatter)
    p.add_argument("shards", help="shard folder or its index.json")
    p.set_defaults(func=cmd_verify_shards)

    p = sub.add_parser("info", help="describe an archive (--verify: and check every byte of it)",
                       formatter_class=HelpFormatter)
    p.add_argument("archive")
    p.add_argument("--verify", action="store_true",
                   help="read every chunk (HDF5 checks each one's Fletcher-32 checksum), check the descriptive "
                        "datasets against meta_sha256 and the archive against manifest.json when one is beside it")
    p.add_argument("--unchecked-archive", action="store_true", help=UNCHECKED_HELP)
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also draw the build's catalogue (patches.parquet beside the archive) by status and split, "
                        "with the drop reasons, into this PNG (default: none)")
    p.add_argument("--json", action="store_true",
                   help="print everything as JSON: attributes, datasets and the whole build configuration and provenance")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("sr-train", help="train the DSen2 networks (Wald's protocol) and write a weights bundle",
                       formatter_class=HelpFormatter)
    from sr_lab import flags as sr_flags
    sr_flags.add_train_args(p)
    p.set_defaults(func=lazy("sr_lab.train"))

    p = sub.add_parser("sr-eval", help="super-resolution quality (Wald's protocol; full resolution with a truth)",
                       formatter_class=HelpFormatter)
    sr_flags.add_eval_args(p)
    p.set_defaults(func=lazy("sr_lab.evaluate"))

    p = sub.add_parser("sr-convert", help="the DSen2 authors' two Keras weight files (2x, 6x) as one bundle",
                       formatter_class=HelpFormatter)
    p.add_argument("keras", nargs=2, help="the 2x and 6x .hdf5 files (either order)")
    p.add_argument("--out", required=True, help="bundle to write (.npz)")
    p.set_defaults(func=cmd_sr_convert)

    from reference_train import evaluate as ref_evaluate
    p = sub.add_parser("train", parents=[train_args.get_args_parser(add_help=False)],
                       help="the reference trainer: ResNet-50 multilabel on the shards (Horovod, torch.distributed)",
                       description=train_args.DESCRIPTION, formatter_class=HelpFormatter)
    p.set_defaults(func=lazy("reference_train.train"))
    p = sub.add_parser("evaluate", parents=[ref_evaluate.get_args_parser(add_help=False)],
                       help="per-class precision/recall/F1 and averages of a checkpoint on a split (Tables 2-3)",
                       description=ref_evaluate.__doc__, formatter_class=HelpFormatter)
    p.set_defaults(func=ref_evaluate.main)

    args = parser.parse_args(argv)
    return run_command(args.func, args, kept=KEPT.get(args.cmd, ""))


# what an interrupted command leaves for its rerun (said with "interrupted; rerun ...")
KEPT = {"build": "finished tiles are kept in the output's parts/ and not built again",
        "demo": "finished stages and tiles are kept and not done again",
        "shards": "finished shards are kept and not written again",
        "train": train_args.KEPT,
        "sr-train": "the last epoch's checkpoint is kept; add --resume",
        "synth": "finished products are kept",
        "info": "nothing was written", "verify-shards": "nothing was written",
        "show": "nothing was written (a picture is written whole or not at all)"}


if __name__ == "__main__":
    sys.exit(main())
