"""The main job's data stages as the patch count grows (issue 26): is the cost per patch flat and
the memory bounded?

For every size in ``--patches`` (kept patches, approximately: the inputs are made to give about
that many) and every input kind and upsampling, each stage runs as its own process tree, as a
user runs it, and is measured from outside: wall seconds, peak resident memory of the whole
tree (the sum over the process and all its children, sampled every 50 ms: forked workers'
shared pages count once per process, so it is an upper bound), disk and files written.

Stages: ``build`` (``bigearth-sr build``), ``shards`` (``bigearth-sr shards``), ``tfds`` (``tfds
build`` from the archive, example generation as a plain generator), ``tfds-beam`` (the same
through Beam's DirectRunner, multi-processing, one worker per core), ``loader`` (one streaming
epoch of ``shards.loader`` over every split) and ``verify`` (``bigearth-sr info --verify``); by
name only, ``build-mpi`` (``mpirun`` with one rank on one core, then one rank per core: the
per-rank cost and the MPI efficiency, T1 / (N x TN), for extrapolating to a cluster node).

Inputs: ``l2a`` (synthetic Level-2A products, all of one tile size, so a larger count is more
tiles, as a larger region is), ``v1`` (BigEarthNet v1 patch folders with official lists,
written from the l2a bilinear build's patches of that size: 12 GeoTIFFs and a label JSON each)
and ``v2`` (the same patches in the reBEN layout: reference maps, metadata.parquet). Every
``--builds`` names the input:upsampling pairs built (default: both upsamplings of l2a, bilinear
of v1 and v2; ``all`` adds DSen2 of v1 and v2, ~3 min each at 3,000 patches here);
the later stages run on the builds named by ``--downstream`` (default: l2a's two). Smaller sizes
use the first products of the larger ones.

    python benchmarks/scale.py --patches 300,3000 --json scale.json
    python benchmarks/scale.py --patches 1000,5000,20000 --work /big/disk --json scale.json

The JSON holds ``{"machine": ..., "rows": [{"stage", "input", "upsampling", "patches",
"seconds", "peak_rss_mb", "disk_mb", "files", ...}]}``; the table printed at the end adds, per
stage, the growth of seconds per patch and of peak memory from the smallest size to the largest.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent
STAGES = ("build", "shards", "tfds", "tfds-beam", "loader", "verify")
EXTRA_STAGES = ("build-mpi",)  # asked for by name: mpirun with 1 rank on 1 core, then one rank per core
INPUTS = ("l2a", "v1", "v2")
UPSAMPLINGS = ("bilinear", "dsen2")
# DSen2 of v1/v2 folders (blocks of patches, benchmarks/sr_patch_folders.py): ~3 min each at 3,000
# patches here, asked for by --builds all
BUILDS = ("l2a:bilinear", "l2a:dsen2", "v1:bilinear", "v2:bilinear")
# the stages after the build read an archive, whatever made it: the two upsamplings' archives
DOWNSTREAM = ("l2a:bilinear", "l2a:dsen2")
KEEP = 0.67  # share of a synthetic tile's patches that the default screening keeps (measured: 0.67-0.69)
LOADER = """
import sys, shards
n = 0
for split in sys.argv[2].split(","):
    for x, y in shards.loader(sys.argv[1], split=split, batch_size=64, num_workers=2):
        n += len(x)
print(n)
"""


def measure(cmd: list[str], outputs: list[Path], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` to its end; wall seconds, peak RSS of its process tree, and what ``outputs`` hold."""
    t0 = time.perf_counter()
    with open(log, "ab") as fh:
        fh.write(("\n$ " + " ".join(map(str, cmd)) + "\n").encode())
        fh.flush()
        proc = psutil.Popen(list(map(str, cmd)), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        peak = 0
        while proc.poll() is None:
            total = 0
            try:
                tree = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                tree = []
            for p in tree:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, total)
            time.sleep(0.05)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"error: {' '.join(map(str, cmd))} exited {proc.returncode}; its output is in {log}")
    size, files = 0, 0
    for out in outputs:
        for dirpath, _, names in os.walk(out):
            for name in names:
                size += os.path.getsize(os.path.join(dirpath, name))
                files += 1
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak / 2**20, 1),
            "disk_mb": round(size / 2**20, 2), "files": files}


def synth(folder: Path, n_products: int, tile_size_m: int, workers: int) -> list[Path]:
    """The products, written in parallel (each process one product); those already there are kept."""
    from dataset_builder import synth as s
    from bigearth.files import output_folder
    output_folder(folder)
    cfgs = s.default_configs(n_products, tile_size_m)
    with ProcessPoolExecutor(workers) as ex:
        return list(ex.map(s.write_product, cfgs, [folder] * len(cfgs)))


def _write_v1_part(args) -> None:
    archive_path, indices, folder = args
    from dataset_builder import archive
    from dataset_builder.synth_ben import write_ben
    by_product: dict = {}
    for r in archive.iter_records(archive_path, indices):
        by_product.setdefault(r.product, []).append(r)
    for product, recs in by_product.items():
        write_ben(Path(folder), recs, product + ".SAFE")


def write_v1(archive_path: Path, folder: Path, workers: int) -> None:
    """BigEarthNet v1 patch folders and official lists from an archive's patches."""
    import h5py
    from dataset_builder.synth_ben import write_lists
    with h5py.File(archive_path, "r") as f:
        names = [n.decode() for n in f["name"][:]]
        splits = [s.decode() for s in f["split"][:]]
    patches = folder / "patches"
    patches.mkdir(parents=True)
    chunks = [list(range(i, min(i + 500, len(names)))) for i in range(0, len(names), 500)]
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(_write_v1_part, [(str(archive_path), c, str(patches)) for c in chunks]))
    lists: dict = {}
    for n, s in zip(names, splits):
        lists.setdefault(s, []).append(n)
    write_lists(folder / "lists", lists)


def write_v2(v1: Path, folder: Path) -> None:
    """The same patches in the reBEN layout (splits as v1's official lists give them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataset_builder.bigearthnet_v1 import official_split
    from dataset_builder.synth_ben import make_v2
    made = make_v2(v1 / "patches", folder, snow_copy=False)
    rows = pq.read_table(folder / "metadata.parquet").to_pylist()
    for row in rows:
        row["split"] = official_split(str(v1 / "lists"), made[row["patch_id"]].name)
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(folder / "metadata.parquet")),
                   folder / "metadata.parquet")


def tile_side(smallest: int, workers: int) -> int:
    """Patches along a synthetic tile's side: the largest tile of which the smallest size needs
    one per worker (a build starts no more workers than tiles: with fewer tiles the smallest size
    would be measured on fewer processes than the others), at most a real tile's 91 (109.8 km)."""
    return max(4, min(91, int(math.sqrt(smallest / (KEEP * workers)))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--patches", default="300,3000", help="comma-separated sizes (kept patches)")
    ap.add_argument("--json", default="", help="where to write the rows (required unless --replot)")
    ap.add_argument("--work", default="/tmp/bench_scale", help="working folder (inputs are kept there and reused)")
    ap.add_argument("--builds", default=",".join(BUILDS),
                    help="input:upsampling builds to measure (all: every input with every upsampling)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"of {','.join(STAGES + EXTRA_STAGES)}")
    ap.add_argument("--downstream", default=",".join(DOWNSTREAM),
                    help="input:upsampling builds the stages after build run on (all: every build)")
    ap.add_argument("--tile-side", type=int, default=0,
                    help="patches along a synthetic tile's side (0: the largest tile the smallest size fills once per worker)")
    ap.add_argument("--tfds-shuffle-mib", default="",
                    help="comma-separated bounds of TFDS's in-memory shuffle for the tfds stage, each run side by side "
                         "(BIGEARTH_SR_SHUFFLE_MIB; default: the builder's own)")
    ap.add_argument("--plot", default="", help="also draw the rows into this PNG (default: no plot)")
    ap.add_argument("--replot", default="", help="only draw --plot from the rows of this JSON (nothing is run)")
    ap.add_argument("--keep", action="store_true", help="keep every output (default: each is removed once measured)")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="build workers, Beam workers")
    args = ap.parse_args()
    if args.replot:
        rows = json.loads(Path(args.replot).read_text())["rows"]
        plot(rows, Path(args.plot or Path(args.replot).with_suffix(".png")))
        print(table(rows))
        return

    if not args.json:
        ap.error("--json: give the file the rows are written to")
    sizes = sorted(int(s) for s in args.patches.split(","))
    every = [(i, u) for i in INPUTS for u in UPSAMPLINGS]
    builds = every if args.builds == "all" else [tuple(b.split(":")) for b in args.builds.split(",")]
    downstream = every if args.downstream == "all" else [tuple(b.split(":")) for b in args.downstream.split(",") if b]
    stages = [s for s in args.stages.split(",") if s]
    for name, given in (("--builds", builds), ("--downstream", downstream)):
        if set(given) - set(every):
            ap.error(f"{name}: unknown {sorted(set(given) - set(every))}; each is input:upsampling, input of "
                     f"{','.join(INPUTS)}, upsampling of {','.join(UPSAMPLINGS)}")
    if set(stages) - set(STAGES + EXTRA_STAGES):
        ap.error(f"--stages: unknown {sorted(set(stages) - set(STAGES + EXTRA_STAGES))}; "
                 f"choose from {','.join(STAGES + EXTRA_STAGES)}")
    shuffle_mib = [int(v) for v in args.tfds_shuffle_mib.split(",") if v] or [None]
    side = args.tile_side or tile_side(sizes[0], args.workers)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "scale.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = str(BIN / "bigearth-sr")
    rows: list[dict] = []

    def drop(path: Path) -> None:  # outputs go once measured: the disk holds one size at a time
        if not args.keep:
            shutil.rmtree(path)
    n_products = {n: max(1, round(n / (side * side * KEEP))) for n in sizes}
    products_dir = work / f"products_{side}"
    t = t_start = time.perf_counter()
    all_products = synth(products_dir, max(n_products.values()), side * 1200, args.workers)
    print(f"inputs: {len(all_products)} synthetic products of {side}x{side} patches "
          f"({time.perf_counter() - t:.0f} s); log in {log}", flush=True)

    def record(stage, inp, up, patches, m):
        row = {"stage": stage, "input": inp, "upsampling": up, "patches": patches, **m,
               "s_per_kpatch": round(1000 * m["seconds"] / max(patches, 1), 2),
               "kb_per_patch": round(1024 * m["disk_mb"] / max(patches, 1), 1)}
        rows.append(row)
        print(f"{stage:9} {inp:3} {up:8} {patches:7d} patches: {m['seconds']:8.1f} s  "
              f"{row['s_per_kpatch']:7.2f} s/1000  peak {m['peak_rss_mb']:7.0f} MB  "
              f"{m['disk_mb']:8.1f} MB  {m['files']} files", flush=True)
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))

    for n in sizes:
        size_dir = work / f"n{n}"
        shutil.rmtree(size_dir, ignore_errors=True)
        size_dir.mkdir()
        products = all_products[:n_products[n]]
        # v1 and v2 inputs are written from the l2a bilinear build of the same size
        order = [b for b in every if b in builds or b in downstream or
                 (b == ("l2a", "bilinear") and any(i != "l2a" for i, _ in builds + downstream))]
        for inp, up in order:
            out = size_dir / f"build_{inp}_{up}"
            if inp == "l2a":
                src = [*products, "--clc", products_dir]
            elif not (size_dir / "v1").exists() and not (size_dir / "v2").exists():
                # v1 folders (which v2's are written from), whichever of the two is built first
                write_v1(size_dir / "build_l2a_bilinear" / "bigearth_sr.h5", size_dir / "v1", args.workers)
                drop(size_dir / "build_l2a_bilinear")
            if inp == "v1":
                src = [size_dir / "v1" / "patches", "--official-lists", size_dir / "v1" / "lists"]
            elif inp == "v2":
                if not (size_dir / "v2").exists():
                    write_v2(size_dir / "v1", size_dir / "v2")
                    drop(size_dir / "v1")  # the disk holds one copy of the patches at a time
                src = [size_dir / "v2"]
            m = measure([cli, "build", *src, "--out", out, "--upsampling", up, "--no-progress",
                         "--workers", str(args.workers)], [out], log, env)
            patches = json.loads((out / "manifest.json").read_text())["patches"]
            if "build" in stages and (inp, up) in builds:
                record("build", inp, up, patches, m)
            if "build-mpi" in stages and (inp, up) in downstream:
                for ranks in sorted({1, args.workers}):  # the per-rank cost, and the efficiency on every core
                    mo = size_dir / f"mpi{ranks}_{inp}_{up}"
                    m = measure(["taskset", "-c", f"0-{ranks - 1}", BIN / "mpirun", "-n", str(ranks), sys.executable,
                                 "-m", "bigearth_cli.cli", "build", *src, "--out", mo, "--upsampling", up,
                                 "--no-progress", "--engine", "mpi"], [mo], log, env)
                    record(f"build-mpi{ranks}", inp, up, patches, {**m, "ranks": ranks})
                    drop(mo)
            keep = (inp, up) == ("l2a", "bilinear") and any(i != "l2a" for i, _ in order)
            if (inp, up) not in downstream:
                if not keep:
                    drop(out)
                continue
            archive = out / "bigearth_sr.h5"
            if set(stages) & {"shards", "loader"}:
                sh = size_dir / f"shards_{inp}_{up}"
                m = measure([cli, "shards", archive, "--out", sh, "--no-progress"], [sh], log, env)
                if "shards" in stages:
                    record("shards", inp, up, patches, m)
                if "loader" in stages:
                    splits = ",".join(s for s, c in json.loads((out / "manifest.json").read_text())["patches_per_split"].items() if c)
                    m = measure([sys.executable, "-c", LOADER, sh, splits], [], log, env)
                    record("loader", inp, up, patches, m)
                drop(sh)
            config = "super" if up == "dsen2" else f"super_{up}"
            beam = f"--beam_pipeline_options=direct_num_workers={args.workers},direct_running_mode=multi_processing"
            runs = [("tfds", [], mib) for mib in shuffle_mib] + [("tfds-beam", [beam], None)]
            for stage, extra, mib in runs:
                if stage in stages:
                    td = size_dir / f"{stage}_{inp}_{up}"
                    m = measure([BIN / "tfds", "build", f"bigearth_sr/{config}", "--imports", "dataset_builder.bigearth_sr",
                                 "--manual_dir", out, "--data_dir", td, *extra], [td], log,
                                {**env, "BIGEARTH_SR_SHUFFLE_MIB": str(mib)} if mib else env)
                    record(stage if not args.tfds_shuffle_mib else f"tfds (shuffle {mib} MiB)", inp, up, patches, m)
                    drop(td)
            if "verify" in stages:
                m = measure([cli, "info", "--verify", archive], [], log, env)
                record("verify", inp, up, patches, m)
            if not keep:
                drop(out)
        drop(size_dir)
        print(f"size {n}: done, {time.perf_counter() - t_start:.0f} s since the start", flush=True)
    print(table(rows))
    if args.plot:
        plot(rows, Path(args.plot))


def plot(rows: list[dict], path: Path) -> None:
    """Seconds per 1000 patches and peak memory against the count, one line per stage and build."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups: dict = {}
    for r in rows:
        groups.setdefault(f"{r['stage']} {r['input']} {r['upsampling']}", []).append(r)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["patches"])
        x = [r["patches"] for r in rs]
        a.plot(x, [r["s_per_kpatch"] for r in rs], marker="o", label=label)
        mem = [r for r in rs if r.get("peak_rss_mb") is not None]  # a row recorded from a manifest has none
        b.plot([r["patches"] for r in mem], [r["peak_rss_mb"] / 1024 for r in mem], marker="o", label=label)
    for ax, what in ((a, "wall seconds per 1000 patches"), (b, "peak memory of the process tree (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("patches")
        ax.set_title(what)
        ax.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=7, ncol=2)
    fig.suptitle(f"benchmarks/scale.py: {machine()}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} usable cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"


def table(rows: list[dict]) -> str:
    """Markdown: every row, then per stage, input and upsampling the growth from the smallest size
    to the largest of seconds per patch and of peak memory."""
    out = ["| stage | input | upsampling | patches | s | s / 1000 patches | peak RSS MB | disk MB | KB / patch | files |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rss = "—" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f}"
        out.append(f"| {r['stage']} | {r['input']} | {r['upsampling']} | {r['patches']} | {r['seconds']:.1f} | "
                   f"{r['s_per_kpatch']:.2f} | {rss} | {r['disk_mb']:.1f} | {r['kb_per_patch']:.0f} | {r.get('files') or '—'} |")
    out += ["", "| stage | input | upsampling | patches | s/patch, largest / smallest | peak RSS, largest / smallest |",
            "|---|---|---|---|---:|---:|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["stage"], r["input"], r["upsampling"]), []).append(r)
    for (stage, inp, up), rs in groups.items():
        a, b = min(rs, key=lambda r: r["patches"]), max(rs, key=lambda r: r["patches"])
        if a is not b:
            mem = "—" if None in (a.get("peak_rss_mb"), b.get("peak_rss_mb")) else f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}"
            out.append(f"| {stage} | {inp} | {up} | {a['patches']} → {b['patches']} | "
                       f"{b['s_per_kpatch'] / a['s_per_kpatch']:.2f} | {mem} |")
    mpi = {(r["input"], r["upsampling"], r["patches"], r["ranks"]): r["seconds"] for r in rows if "ranks" in r}
    eff = [(k, mpi[k[:3] + (1,)] / (k[3] * s)) for k, s in mpi.items() if k[3] > 1 and k[:3] + (1,) in mpi]
    if eff:
        out += ["", "| input | upsampling | patches | ranks | s per patch, 1 rank on 1 core | MPI efficiency |",
                "|---|---|---:|---:|---:|---:|"]
        for (inp, up, n, ranks), e in eff:
            out.append(f"| {inp} | {up} | {n} | {ranks} | {mpi[(inp, up, n, 1)] / n:.4f} | {e:.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
