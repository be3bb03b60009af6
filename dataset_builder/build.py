"""Building the archive: plan tiles over workers (Algorithm 1), cut and screen patches per tile
into part files, merge, and write the manifest.

Every tile's part is written to a temporary name and renamed, then recorded by a marker
(JSON with its checksum and the build fingerprint); a rerun skips tiles whose marker matches,
so a killed build resumes and ends with the archive an uninterrupted build writes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bigearth import __version__
from bigearth import nomenclature as nom
from bigearth.errors import EnvironmentFailure, InputError
from bigearth.files import atomic_path, content_digest, disk_full_error, folder_lock, is_disk_full, sha256_file
from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, PATCH_M, PATCH_PX, VALUE_CONVENTION

from . import archive, screening, upsample
from .labels import ClcLabeler, JsonLabeler
from .safe import NATIVE, Product, native_uint16, open_product, read_band, to_reflectance_dn
from .schedule import serpentine
from .stats import BandStats, SplitStats

ARCHIVE_NAME = "bigearth_sr.h5"
PART_FORMAT = 2  # what a part's marker records (2: statistics per split); older parts are rebuilt
MANIFEST_NAME = "manifest.json"


@dataclasses.dataclass
class BuildConfig:
    out_dir: str
    upsampling: str = "bilinear"
    sr_weights: str | None = None  # dsen2: bundle .npz, or "2x.hdf5,6x.hdf5"; None = the shipped default
    sr_device: str = "cpu"
    sr_precision: str = "auto"
    clc: list = dataclasses.field(default_factory=list)
    labels_json: str | None = None  # BigEarthNet label JSONs instead of CORINE rasters
    clc_values: str = "auto"
    label_res: int = 20
    thresholds: dict = dataclasses.field(default_factory=lambda: dict(screening.DEFAULT_THRESHOLDS))
    compression: str = archive.DEFAULT_COMPRESSION
    merge: str = "copy"
    split_fractions: tuple = (0.6, 0.2, 0.2)
    official_lists: str | None = None
    strict: bool = False
    progress: bool = True

    def upsampler(self) -> upsample.Upsampler:
        opts = {"weights": self.sr_weights, "device": self.sr_device, "precision": self.sr_precision}
        return upsample.get(self.upsampling, **(opts if self.upsampling == "dsen2" else {}))

    def super_resolution(self) -> dict:
        """The method as recorded in the archive and manifest (for DSen2: the weights' sha256 and
        provenance); computed once, and part of the fingerprint."""
        if "_sr" not in self.__dict__:
            up = self.upsampler()
            self.__dict__["_sr"] = up.describe() if hasattr(up, "describe") else {"method": up.name}
        return self.__dict__["_sr"]

    def label_sources(self) -> dict:
        """Content digests of the label inputs every task may read: the CORINE rasters (in the
        order they are searched) and the official lists. Computed once (in the process that
        plans) and carried to the workers with the config. An unreadable file gets a digest of
        its error: it fails the tasks that need it, when they need it."""
        if "_labels" not in self.__dict__:
            from .bigearthnet_v1 import list_files

            d = {"clc": [_digest_or_error(p) for p in self.clc]}
            if self.official_lists:
                d["lists"] = {f.name: _digest_or_error(f) for f in list_files(self.official_lists)}
            self.__dict__["_labels"] = d
        return self.__dict__["_labels"]

    def fingerprint(self) -> str:
        """What decides every part's content besides its own inputs (options, the method and its
        weights, the label sources' content, the version): see ``task_fingerprint``."""
        keys = ("upsampling", "clc_values", "label_res", "thresholds", "compression", "split_fractions")
        d = {k: getattr(self, k) for k in keys}
        d["super_resolution"] = self.super_resolution()
        d["label_sources"] = self.label_sources()
        d["labels_json"] = bool(self.labels_json)
        d["official_lists"] = bool(self.official_lists)
        d["version"] = __version__
        d["part_format"] = PART_FORMAT
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:16]

    def public(self) -> dict:
        d = dataclasses.asdict(self)
        d["super_resolution"] = self.super_resolution()
        d["clc"] = [str(p) for p in self.clc]
        d["split_fractions"] = list(self.split_fractions)
        return d


def _digest_or_error(path) -> str:
    try:
        return content_digest(path)
    except OSError as e:
        return f"unreadable: {type(e).__name__}"


# --------------------------------------------------------------------------- per-tile work

def tile_split(tile: str, fractions) -> str:
    """Deterministic, tile-disjoint split from a hash of the MGRS tile id."""
    h = int(hashlib.sha256(tile.encode()).hexdigest()[:8], 16) / 2 ** 32
    a, b = fractions[0], fractions[0] + fractions[1]
    return "train" if h < a else "validation" if h < b else "test"


def _bounds(geo, x: int, y: int) -> list[float]:
    ulx, uly = geo.ulx + x * PATCH_M, geo.uly - y * PATCH_M
    return [ulx, uly, ulx + PATCH_M, uly - PATCH_M]


def process_product(product: Product, cfg: BuildConfig, part_path: Path, progress=None) -> dict:
    """Cut one product into screened, labelled, super-resolved patches in a part file."""
    geo = product.geocoding
    ncols = geo.grid_cols
    up = cfg.upsampler()
    if cfg.labels_json:
        json_labeler = JsonLabeler(cfg.labels_json)
        label_source = str(cfg.labels_json)

        def strip_labels(y):
            return json_labeler.strip_classes(product.prefix, y, ncols, lambda x: _bounds(geo, x, y))
    elif cfg.clc:
        labeler = ClcLabeler(cfg.clc, cfg.label_res, cfg.clc_values)
        classes_idx, clc_path = labeler.tile_classes(geo.crs, geo.ulx, geo.uly, geo.size_10m * 10)
        lab_px = PATCH_M // cfg.label_res
        label_source = str(clc_path)

        def strip_labels(y):
            return labeler.strip_classes(classes_idx[y * lab_px:(y + 1) * lab_px, : ncols * lab_px], ncols)
    else:
        raise InputError(product.path, "nothing to label the patches with: give --clc or --labels-json")

    t0 = time.perf_counter()
    # whole bands: GDAL already decodes each on every core, and windowed reads cost 13 % more
    bands = {b: read_band(product, b) for b in NATIVE}
    t_decode = time.perf_counter() - t0
    convert = lambda b, a: to_reflectance_dn(product, b, a)  # noqa: E731
    split = tile_split(product.tile, cfg.split_fractions)

    def cut_strip(y: int):
        """Screen, label and cut one row of patches; pure, so rows can run on several threads."""
        r0, r1 = y * PATCH_PX, (y + 1) * PATCH_PX
        scl = bands["SCL"][r0 // 2:r1 // 2, : ncols * PATCH_PX // 2]
        reasons = screening.drop_reasons(screening.scl_fractions(scl, PATCH_PX // 2), cfg.thresholds)
        classes = strip_labels(y)
        for x in range(ncols):
            if reasons[x] is None and not classes[x].any():
                reasons[x] = "no_labels"
        keep = [x for x in range(ncols) if reasons[x] is None]
        if not keep:
            return reasons, None, [], None
        strip = {}
        for key, names, f in (("data_10m", BANDS_10M, 1), ("data_20m", BANDS_20M, 2), ("data_60m", BANDS_60M, 6)):
            strip[key] = np.stack([native_uint16(product, n, bands[n][r0 // f:r1 // f]) for n in names])
        strip["data_super"] = upsample.assemble_super(strip["data_10m"], upsample.upsample_rows(up, bands, convert, r0, r1, keep))
        arrays = {}
        for key, a in strip.items():
            p = a.shape[1]  # patch side at this resolution
            cube = a[:, :, : ncols * p].reshape(a.shape[0], p, ncols, p).transpose(2, 0, 1, 3)
            arrays[key] = np.ascontiguousarray(cube[keep])
        arrays["classes"] = classes[keep]
        arrays["classes_19"] = nom.to_19(arrays["classes"])
        meta = [{"name": f"{product.prefix}_{x}_{y}", "product": product.name, "tile": product.tile,
                 "date": product.iso_date, "split": split, "crs": geo.crs, "x": x, "y": y,
                 "bounds": _bounds(geo, x, y)} for x in keep]
        part = BandStats()
        part.add(arrays)
        return reasons, arrays, meta, part

    drops = {k: 0 for k in list(screening.SCL_CLASSES) + ["no_labels"]}
    stats = SplitStats()  # one split per product: the tile's
    writer = archive.PartWriter(part_path, cfg.compression)
    # rows are cut on a few threads (numpy and torch release the GIL) and written in order
    threads = max(1, min(4, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(threads)
    pending: deque = deque()

    def drain(limit: int) -> None:
        while len(pending) > limit:
            reasons, arrays, meta, part = pending.popleft().result()
            for r in reasons:
                if r is not None:
                    drops[r] += 1
            if arrays is not None:
                writer.append(arrays, meta)
                stats.merge({split: part.sums})
            if progress is not None:
                progress(1)

    try:
        for y in range(ncols):
            pending.append(pool.submit(cut_strip, y))
            drain(2 * threads)  # bounded look-ahead keeps memory to a few rows
        drain(0)
        n = writer.n
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        pool.shutdown(cancel_futures=True)
    return {"kept": n, "drops": drops, "stats": stats.to_json(), "labels": label_source,
            "baseline": product.baseline, "offsets_removed": any(product.offsets.values()),
            "seconds_decode": round(t_decode, 3), "seconds_total": round(time.perf_counter() - t0, 3)}


# --------------------------------------------------------------------------- tasks and plan

@dataclasses.dataclass
class Task:
    """One unit of Algorithm 1: a product, or one tile_source's patches of the BigEarthNet archive."""

    id: str
    kind: str  # "product" or "bigearthnet"
    source: object  # Product, or list of patch folders
    count: int


def plan_tasks(inputs, cfg: BuildConfig) -> tuple[list[Task], dict]:
    """Open every input's metadata. An input that cannot be opened (or, in the BigEarthNet
    archive, a patch whose label JSON cannot be read) is returned as a failure, keyed by the
    input's name; the others are planned."""
    from . import bigearthnet_v1

    tasks, failed = [], {}
    for inp in inputs:
        inp = Path(inp)
        key = inp.name.removesuffix(".zip").removesuffix(".SAFE")
        try:
            if bigearthnet_v1.is_archive_dir(inp):
                groups, bad = bigearthnet_v1.group_by_tile_source(inp)
                if bad and cfg.strict:
                    raise InputError(next(iter(bad)), next(iter(bad.values())))
                failed.update(bad)
                tasks.extend(Task(tid, "bigearthnet", folders, len(folders)) for tid, folders in groups.items())
                continue
            p = open_product(inp)
            tasks.append(Task(p.name, "product", p, p.patch_count))
        except (InputError, OSError) as e:
            if cfg.strict:
                raise
            failed[key] = str(e) if isinstance(e, InputError) else f"{inp}: cannot read ({e.strerror or e})"
    ids = [t.id for t in tasks]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(dup[0], f"the same product is given twice ({', '.join(dup)}): give each input once")
    return sorted(tasks, key=lambda t: t.id), failed


def task_inputs(task: Task, cfg: BuildConfig) -> dict:
    """Content digests of what this task reads besides the shared label sources: its product (or
    its patch folders) and, with --labels-json, the label JSONs of its patches."""
    if task.kind == "product":
        d = {"product": product_digest(task.source)}
        if cfg.labels_json:
            d["labels_json"] = JsonLabeler(cfg.labels_json).digest(task.source.prefix)
        return d
    h = hashlib.sha256()
    for folder in sorted(task.source, key=lambda f: f.name):
        h.update(f"{folder.name}\0{content_digest(folder)}\n".encode())
    return {"patches": h.hexdigest()}


def product_digest(product: Product) -> str:
    """Content digest of what the builder reads of a product: its metadata and the 13 band files
    it decodes (a zip: the whole file). Other files of the SAFE (TCI, AOT, the resampled copies
    of the 10 m bands, QI data) do not shape a part and are not read."""
    path = Path(product.path)
    if path.is_file():
        return content_digest(path)
    files = [path / "MTD_MSIL2A.xml", *sorted(path.glob("GRANULE/*/MTD_TL.xml")),
             *(Path(product.band_paths[b]) for b in sorted(product.band_paths))]
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(f"{f.relative_to(path).as_posix()}\0{content_digest(f)}\n".encode())
        except FileNotFoundError:
            raise InputError(f, "file is missing from the product") from None
        except OSError as e:
            raise InputError(f, f"cannot read ({e.strerror or e})") from None
    return h.hexdigest()


def task_fingerprint(task: Task, cfg: BuildConfig) -> str:
    """A part is reused only under the same fingerprint: every input that shaped it (product or
    patches, label sources, options, method and weights) has the same content."""
    doc = {"config": cfg.fingerprint(), "inputs": task_inputs(task, cfg)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _parts_dir(cfg) -> Path:
    return Path(cfg.out_dir) / "parts"


def _marker(cfg, task_id) -> Path:
    return _parts_dir(cfg) / f"{task_id}.json"


def done_result(cfg: BuildConfig, task: Task, fingerprint: str) -> dict | None:
    """The recorded result of a finished tile, if its part is intact and was built from the same
    inputs the same way."""
    m = _marker(cfg, task.id)
    if not m.exists():
        return None
    try:
        res = json.loads(m.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    part = _parts_dir(cfg) / f"{task.id}.h5"
    if not isinstance(res, dict) or res.get("fingerprint") != fingerprint or not part.exists() \
            or sha256_file(part) != res.get("sha256"):
        return None
    return res


def run_task(task: Task, cfg: BuildConfig, progress=None) -> dict:
    """Build one tile's part (or reuse it). Whatever goes wrong with this input is recorded
    against it and the build goes on (unless ``strict``); only the environment (a full disk)
    ends the build, as an EnvironmentFailure."""
    from . import bigearthnet_v1

    part = _parts_dir(cfg) / f"{task.id}.h5"
    try:
        fingerprint = task_fingerprint(task, cfg)
        prev = done_result(cfg, task, fingerprint)
        if prev is not None:
            prev["resumed"] = True
            return prev
        part.parent.mkdir(parents=True, exist_ok=True)
        if task.kind == "product":
            res = process_product(task.source, cfg, part, progress)
        else:
            res = bigearthnet_v1.process_tile_source(task.id, task.source, cfg, part, progress)
        res.update(task=task.id, status="ok", fingerprint=fingerprint, sha256=sha256_file(part))
        with atomic_path(_marker(cfg, task.id)) as tmp:
            tmp.write_text(json.dumps(res, indent=1))
    except EnvironmentFailure:
        raise
    except Exception as e:  # noqa: BLE001 - sorted below: the environment, or this input
        if is_disk_full(e):
            raise disk_full_error(part, e) from None
        if cfg.strict:
            raise
        if isinstance(e, (InputError, nom.UnknownClassError)):
            return {"task": task.id, "status": "failed", "error": str(e)}
        if isinstance(e, OSError):
            return {"task": task.id, "status": "failed", "error": f"{task.id}: cannot read ({e})"}
        return {"task": task.id, "status": "failed", "error": f"{task.id}: unexpected {type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}
    res["resumed"] = False
    return res


# --------------------------------------------------------------------------- engines

def _worker_main(worker: int, tasks: list[Task], cfg: BuildConfig, queue) -> None:
    import torch
    torch.set_num_threads(1)
    for t in tasks:
        try:
            res = run_task(t, cfg)
        except BaseException as e:  # strict mode, a full disk, or a bug: report it instead of dying silently
            res = _fatal(t, e)
        queue.put(res)
        if res.get("fatal"):
            return


def run_local(tasks: list[Task], cfg: BuildConfig, workers: int) -> list[dict]:
    """Run the plan on ``workers`` local processes (or in this process when workers == 1)."""
    from tqdm import tqdm

    results = []
    if workers <= 1:
        bar = tqdm(total=len(tasks), desc="tiles", unit="tile", disable=not cfg.progress)
        for t in tasks:
            inner = tqdm(total=max(1, int(round(t.count ** 0.5))) if t.kind == "product" else t.count,
                         desc=t.id[:38], unit="row" if t.kind == "product" else "patch", leave=False,
                         disable=not cfg.progress)
            results.append(run_task(t, cfg, inner.update))
            inner.close()
            bar.update(1)
            bar.set_postfix_str(_status(results[-1]))
        bar.close()
        return results

    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    plan = serpentine(tasks, [t.count for t in tasks], workers)
    procs = [ctx.Process(target=_worker_main, args=(w, plan[w], cfg, queue), daemon=True) for w in range(workers)]
    for p in procs:
        p.start()
    bar = tqdm(total=len(tasks), desc=f"tiles ({workers} workers)", unit="tile", disable=not cfg.progress)
    import queue as _q
    while len(results) < len(tasks):
        try:
            res = queue.get(timeout=1.0)
        except _q.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:  # a worker killed by a signal or crashed: end the build, never hang
                for p in procs:
                    p.kill()
                raise RuntimeError(f"a build worker died (exit code {dead[0].exitcode})") from None
            continue
        results.append(res)
        bar.update(1)
        bar.set_postfix_str(_status(res))
        if res.get("fatal"):
            for p in procs:
                p.kill()
            _raise_fatal(res)
    bar.close()
    for p in procs:
        p.join()
    return results


def run_mpi(tasks: list[Task], cfg: BuildConfig) -> list[dict] | None:
    """Each MPI rank builds its share; rank 0 gathers the results (others return None)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    mine = serpentine(tasks, [t.count for t in tasks], size)[rank]
    out = []
    for t in mine:
        try:
            out.append(run_task(t, cfg))
        except BaseException as e:  # strict mode, a full disk, or a bug: this rank stops and reports it
            sys.stderr.write(f"rank {rank}: {t.id}: {e}\n")
            out.append(_fatal(t, e))
            break
        if cfg.progress:
            sys.stderr.write(f"[rank {rank}] {t.id}: {_status(out[-1])}\n")
    # every rank reaches the gather (a failed one right away), so nothing hangs, and rank 0 sees a
    # fatal result before it writes anything: no archive is merged beside a failure (an MPI_Abort
    # here raced with rank 0's merge: an archive without a manifest was seen)
    gathered = comm.gather(out, root=0)
    if rank != 0:
        return None
    results = [r for rs in gathered for r in rs]
    fatal = [r for r in results if r.get("fatal")]
    if fatal:
        _raise_fatal(fatal[0])
    return results


def _fatal(task: Task, e: BaseException) -> dict:
    """A result that ends the build, as a worker or rank sends it to the parent."""
    kind = "environment" if isinstance(e, EnvironmentFailure) else "input" if isinstance(e, InputError) else "bug"
    return {"task": task.id, "status": "failed", "error": str(e) if kind != "bug" else f"{type(e).__name__}: {e}",
            "kind": kind, "traceback": traceback.format_exc(), "fatal": True}


def _raise_fatal(res: dict):
    """In the parent: the error a worker ended with, as the same kind of exception."""
    if res.get("kind") == "environment":
        raise EnvironmentFailure(res["error"])
    if res.get("kind") == "input":
        raise InputError(res["task"], res["error"].removeprefix(f"{res['task']}: "))
    raise RuntimeError(f"{res['task']}: {res['error']}\n{res.get('traceback', '')}")


def _status(res: dict) -> str:
    if res.get("status") != "ok":
        return f"FAILED {res.get('error', '')[:60]}"
    return f"kept {res['kept']}" + (" (resumed)" if res.get("resumed") else "")


# --------------------------------------------------------------------------- finish

def finish(tasks: list[Task], results: list[dict], failed_inputs: dict, cfg: BuildConfig, seconds: float) -> dict:
    """Merge the parts in task order into the archive and write the manifest. The archive is
    merged under a temporary name; the old manifest is removed before the new archive takes its
    place and the new manifest is written after, so the folder never shows a manifest that does
    not describe its archive (a build with no patch removes the archive)."""
    out = Path(cfg.out_dir)
    by_id = {r["task"]: r for r in results}
    ok = [t.id for t in tasks if by_id.get(t.id, {}).get("status") == "ok"]
    parts = [_parts_dir(cfg) / f"{i}.h5" for i in ok]
    archive_path, manifest_path = out / ARCHIVE_NAME, out / MANIFEST_NAME
    n = 0
    try:
        if parts and sum(by_id[i]["kept"] for i in ok):
            with atomic_path(archive_path) as tmp:
                n = archive.merge(parts, tmp, cfg.public(), cfg.compression, cfg.merge)
                manifest_path.unlink(missing_ok=True)
        else:
            manifest_path.unlink(missing_ok=True)
            archive_path.unlink(missing_ok=True)
    except (OSError, RuntimeError) as e:
        if is_disk_full(e):
            raise disk_full_error(archive_path, e, sum(p.stat().st_size for p in parts)) from None
        raise
    drops: dict[str, int] = {}
    for i in ok:
        for k, v in by_id[i]["drops"].items():
            drops[k] = drops.get(k, 0) + v
    failed = dict(failed_inputs)
    for t in tasks:
        r = by_id.get(t.id, {})
        if r.get("status") != "ok":
            failed[t.id] = r.get("error", "no result (the worker ended without reporting)")
        failed.update(r.get("failed_inputs") or {})  # bad patches of a BigEarthNet tile_source
    totals = SplitStats()
    for i in ok:
        totals.merge(by_id[i]["stats"])
    split_counts: dict[str, int] = {}
    if n:
        import h5py
        with h5py.File(archive_path, "r") as f:
            for s, c in zip(*np.unique(f["split"].asstr()[:], return_counts=True)):
                split_counts[str(s)] = int(c)
    outputs = {ARCHIVE_NAME: sha256_file(archive_path)} if n else {}
    if cfg.merge == "virtual" and n:  # the parts are outputs too; their checksums are in the markers already
        outputs.update({f"parts/{i}.h5": by_id[i]["sha256"] for i in ok})
    manifest = {
        "version": __version__,
        "config": cfg.public(),
        "value_convention": VALUE_CONVENTION,
        "patches": n,
        "patches_per_split": split_counts,
        "tiles": {i: {k: by_id[i][k] for k in ("kept", "drops", "sha256", "fingerprint", "seconds_decode",
                                               "seconds_total") if k in by_id[i]} for i in ok},
        "tiles_ok": len(ok),
        "tiles_failed": failed,
        "tracebacks": {r["task"]: r["traceback"] for r in results if r.get("traceback")},
        "dropped": drops,
        "dropped_total": sum(drops.values()),
        "band_stats": totals.normalisation(),
        "band_stats_per_split": totals.per_split(),
        "outputs": outputs,
        "seconds": round(seconds, 2),
    }
    if not manifest["tracebacks"]:
        del manifest["tracebacks"]
    try:
        with atomic_path(manifest_path) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1))
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(manifest_path, e) from None
        raise
    return manifest


def build(inputs, cfg: BuildConfig, workers: int = 1, engine: str = "local", wait: bool = False) -> dict | None:
    """Plan, build and merge. Returns the manifest (on MPI rank 0; None on other ranks).

    The output folder is locked for the run (``folder_lock``): a second build into it ends at
    once naming this one, or waits with ``wait``."""
    t0 = time.perf_counter()
    rank0 = engine != "mpi" or _mpi_rank() == 0
    lock = folder_lock(cfg.out_dir, wait, "build") if rank0 else contextlib.nullcontext()
    with lock:
        tasks, failed_inputs = plan_tasks(inputs, cfg)
        cfg.label_sources()  # digested once here, carried to the workers
        if engine == "mpi":
            results = run_mpi(tasks, cfg)
            if results is None:
                return None
        else:
            results = run_local(tasks, cfg, workers)
        return finish(tasks, results, failed_inputs, cfg, time.perf_counter() - t0)


def _mpi_rank() -> int:
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank()
