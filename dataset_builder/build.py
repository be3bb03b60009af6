"""Building the archive: plan tiles over workers (Algorithm 1), cut and screen patches per tile
into part files, merge, and write the manifest.

The steps live in their own modules: ``config.py`` (options and fingerprint), ``tasks.py``
(planning, per-task fingerprints, resumable execution), ``products.py`` and
``bigearthnet_v1.py``, ``bigearthnet_v2.py`` and ``patch_ingest.py`` (the per-tile work), ``engines.py`` (local processes, MPI ranks). This
module runs them and merges: every tile's part is written to a temporary name and renamed,
then recorded by a marker (its checksum and fingerprint); a rerun skips tiles whose marker
matches, so a killed build resumes and ends with the archive an uninterrupted build writes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from bigearth import __version__
from bigearth.errors import EnvironmentFailure
from bigearth.files import (atomic_path, clear_dead_temporaries, disk_full_named, done_record, field_digests,
                            folder_lock, mark_done, sha256_file, write_text)
from bigearth.record import VALUE_CONVENTION

from . import archive, catalogue
from .config import BuildConfig  # noqa: F401  (the build's public API: BuildConfig, build)
from .engines import choose_workers, run_local, run_mpi
from .plan import check_disk, named_products, option_notes, require_labels
from .stats import SplitStats
from .tasks import Task, expand_folders, parts_dir, plan_tasks

ARCHIVE_NAME = "bigearth_sr.h5"
MANIFEST_NAME = "manifest.json"


def finish(tasks: list[Task], results: list[dict], failed_inputs: dict, cfg: BuildConfig, seconds: float,
           workers: dict | None = None, ignored: dict | None = None, notes: list[str] | None = None) -> dict:
    """Merge the parts in task order into the archive and write the manifest. The archive is
    merged under a temporary name; the old manifest is removed before the new archive takes its
    place and the new manifest is written after, so the folder never shows a manifest that does
    not describe its archive (a build with no patch removes the archive and keeps its manifest as
    ``FAILED_MANIFEST_NAME`` only)."""
    out = Path(cfg.out_dir)
    by_id = {r["task"]: r for r in results}
    ok = [t.id for t in tasks if by_id.get(t.id, {}).get("status") == "ok"]
    parts = [parts_dir(cfg) / f"{i}.h5" for i in ok]
    archive_path, manifest_path = out / ARCHIVE_NAME, out / MANIFEST_NAME
    n = 0
    # the archive is a function of its parts (by content, in order) and the options: when neither
    # changed it is kept as it is, so what was made from it (shards, a trained model) stays valid
    merge_fp = hashlib.sha256(json.dumps({"parts": [by_id[i]["sha256"] for i in ok], "config": cfg.public(),
                                          "version": __version__}, sort_keys=True).encode()).hexdigest()[:16]
    merge_marker = parts_dir(cfg) / ".archive.json"
    totals = SplitStats()
    for i in ok:
        totals.merge(by_id[i]["stats"])
    with disk_full_named(archive_path, lambda: sum(p.stat().st_size for p in parts)):
        reused = done_record(merge_marker, archive_path, merge_fp) if parts else None
        archive_sha = None
        if reused is not None:
            n, archive_sha = int(reused["patches"]), reused["sha256"]
        elif parts and sum(by_id[i]["kept"] for i in ok):
            merge_marker.unlink(missing_ok=True)
            with atomic_path(archive_path) as tmp:
                n = archive.merge(parts, tmp, cfg.public(), cfg.compression, cfg.merge, cfg.checksums,
                                  band_stats=totals.normalisation())
                manifest_path.unlink(missing_ok=True)
            archive_sha = sha256_file(archive_path)
            mark_done(merge_marker, archive_path, merge_fp, {"patches": n, "sha256": archive_sha}, sha256=archive_sha)
        else:
            merge_marker.unlink(missing_ok=True)
            manifest_path.unlink(missing_ok=True)
            archive_path.unlink(missing_ok=True)
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
    ignored = dict(ignored or {})
    for i in ok:  # what the patch folders hold besides the patch's files, found as they were read
        ignored.update(by_id[i].get("inputs_ignored") or {})
    checks = [by_id[i]["label_check"] for i in ok if "label_check" in by_id[i]]
    label_check = None
    if checks:  # BigEarthNet v2: the 43 classes from the reference maps, mapped to 19, against the parquet
        label_check = {"patches": sum(c["patches"] for c in checks), "disagree": sum(c["disagree"] for c in checks),
                       "by_class_19": {}}
        for c in checks:
            for k, v in c["by_class_19"].items():
                label_check["by_class_19"][k] = label_check["by_class_19"].get(k, 0) + v
    split_counts: dict[str, int] = {}
    if n:
        import h5py
        with h5py.File(archive_path, "r") as f:
            for s, c in zip(*np.unique(f["split"].asstr()[:], return_counts=True)):
                split_counts[str(s)] = int(c)
    outputs = {ARCHIVE_NAME: archive_sha} if n else {}
    # the catalogue: every grid patch of every built task, kept or why not (written even when
    # nothing was kept: it shows what screening dropped, and where)
    cat_path = out / catalogue.CATALOGUE_NAME
    rows = [by_id[i]["catalogue"] for i in ok]
    if rows:
        with disk_full_named(cat_path):
            cat = catalogue.write(cat_path, rows)
        outputs[catalogue.CATALOGUE_NAME] = cat["sha256"]
    else:
        cat_path.unlink(missing_ok=True)
    if cfg.merge == "virtual" and n:  # the parts are outputs too; their checksums are in the markers already
        outputs.update({f"parts/{i}.h5": by_id[i]["sha256"] for i in ok})
    manifest = {
        "version": __version__,
        "config": cfg.public(),
        "value_convention": VALUE_CONVENTION,
        "patches": n,
        "patches_per_split": split_counts,
        "tiles": {i: {k: by_id[i][k] for k in ("kept", "drops", "sha256", "fingerprint", "seconds_decode",
                                               "seconds_total", "sr_adapted", "sr_held_px") if k in by_id[i]} for i in ok},
        "tiles_ok": len(ok),
        "tiles_failed": failed,
        "inputs_ignored": dict(sorted(ignored.items())),  # seen and not used (not a patch), each with the reason
        "tracebacks": {r["task"]: r["traceback"] for r in results if r.get("traceback")},
        "dropped": drops,
        "dropped_total": sum(drops.values()),
        "band_stats": totals.normalisation(),
        "band_stats_per_split": totals.per_split(),
        "outputs": outputs,
        "seconds": round(seconds, 2),
        "workers": workers,
        "notes": list(notes or []),  # what the options imply and a user may not expect (said on the console too)
    }
    if not manifest["tracebacks"]:
        del manifest["tracebacks"]
    if label_check is not None:
        manifest["labels_43_vs_19"] = label_check
    manifest["digests"] = field_digests(manifest, archive.MANIFEST_FIELDS)
    failed_path = out / archive.FAILED_MANIFEST_NAME
    if not n:
        manifest_path.unlink(missing_ok=True)
        manifest_path = failed_path
    with disk_full_named(manifest_path):
        write_text(manifest_path, json.dumps(manifest, indent=1))
    if n:
        failed_path.unlink(missing_ok=True)  # an earlier attempt's record: this build has an archive
    return manifest


def build(inputs, cfg: BuildConfig, workers: int | None = None, engine: str = "local", wait: bool = False) -> dict | None:
    """Plan, build and merge. Returns the manifest (on MPI rank 0; None on other ranks).
    ``workers``: local processes; None chooses (``engines.choose_workers``: every core, as far
    as the tasks, their expected work and the memory allow).

    The output folder is locked for the run (``folder_lock``): a second build into it ends at
    once naming this one, or waits with ``wait``."""
    t0 = time.perf_counter()
    rank0 = engine != "mpi" or _mpi_rank() == 0
    lock = folder_lock(cfg.out_dir, wait, "build") if rank0 else contextlib.nullcontext()
    inputs, found = expand_folders(inputs, cfg)
    if rank0:
        for line in found:
            print(line, flush=True)
    require_labels(named_products(inputs), cfg)  # before any work
    with lock:
        tasks, failed_inputs, ignored = plan_tasks(inputs, cfg)
        require_labels([t.id for t in tasks if t.kind == "product"], cfg)
        notes = option_notes(tasks, cfg)
        if rank0:
            for note in notes:
                print(f"note: {note}", file=sys.stderr, flush=True)
            too_big = check_disk(tasks, cfg)
            if too_big:  # before any work, not as a full disk hours later
                raise EnvironmentFailure(f"{cfg.out_dir}: {too_big}")
        cfg.label_sources()  # digested once here, carried to the workers
        if engine == "mpi":
            if not rank0:  # rank 0 cleared its host's when it took the lock; a rank sees only its own host's
                clear_dead_temporaries(Path(cfg.out_dir) / "parts", depth=0, say=False)
            results = run_mpi(tasks, cfg)
            if results is None:
                return None
            chosen = {"engine": "mpi"}
        else:
            n, why = choose_workers(tasks, workers)
            chosen = {"engine": "local", "workers": n, "why": why}
            results = run_local(tasks, cfg, n)
        return finish(tasks, results, failed_inputs, cfg, time.perf_counter() - t0, chosen, ignored, notes)


def _mpi_rank() -> int:
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank()
