"""HDF5 archive -> WebDataset tar shards per split, plus the shard index.

Each split's patches are shuffled with a seed (across tiles: a shard mixes many tiles) and
dealt into shards of equal sample count (the last holds the rest), sized so a shard is close to
the byte target; the reader balances ranks by samples (``reader.epoch_slices``). Every shard is
written to a temporary name and renamed; a marker in ``.progress/`` records its checksum so a
rerun skips finished shards. ``index.json`` is written last, so its presence means a complete
set.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (Blosc filters of the archive)
import numpy as np
import webdataset as wds
from tqdm import tqdm

from bigearth import __version__, options
from bigearth.distinfo import capped, usable_cores
from bigearth import nomenclature as nom
from bigearth.errors import EnvironmentFailure, InputError, OptionError
from bigearth.files import (atomic_path, disk_full_named, done_record, field_digests, folder_lock, free_bytes,
                            mark_done, sha256_file, size_text, write_text)
from bigearth.record import ARRAYS, META_FIELDS, SPLITS, VALUE_CONVENTION
from bigearth.stopping import ignore_in_worker, start_helpers_shielded
from dataset_builder import archive
from dataset_builder.stats import of_archive

from . import croissant
from .index import INDEX_FIELDS, INDEX_NAME, listed_files, read_index
from .sample import NPY_MEMBERS, SELF_KEY, SHARD_KEY, encode, tar_bytes
from .select import check_known, read_selection
from .select import digest as selection_digest

FORMAT = "bigearth-sr-shards"
# 2: the index records its fields' digests; 3: meta.json carries its own CRC-32C; 4: meta.json names
# its shard's fingerprint (readers refuse a sample whose shard is not the one the index lists)
FORMAT_VERSION = 4
DEFAULT_SHARD_BYTES = 256 * 2**20
MTIME = 0  # fixed member times: the same archive and seed give byte-identical shards


def shard_file(split: str, i: int) -> str:
    return f"bigearth_sr-{split}-{i:06d}.tar"


# the files a writer owns in its folder: its shards (and their temporaries) and progress markers
OWN_FILES = re.compile(r"^\.?bigearth_sr-[a-z]+-\d{6}\.tar(\.\d+(@[^/]+)?\.tmp|\.tmp)?$")


@dataclass
class ShardPlan:
    split: str
    file: str
    indices: list[int]  # archive rows, in the order they are written

    def fingerprint(self, source_id: str, names: list[str]) -> str:
        h = hashlib.sha256(f"{FORMAT_VERSION}|{source_id}|{self.file}|".encode())
        h.update("\n".join(names).encode())
        return h.hexdigest()


def parse_size(text: str | int) -> int:
    """``"256MB"``, ``"1.5GiB"``, ``"300000"`` -> bytes (positive)."""
    try:
        return options.byte_size(text)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"shard size {e}") from None


def sample_size(archive_path) -> int:
    """Tar bytes of one encoded sample (all samples have the same arrays; JSON differs by bytes)."""
    with h5py.File(archive_path, "r") as f:
        return tar_bytes(encode(archive.read_record(f, 0)))


def plan(archive_path, shard_bytes: int = DEFAULT_SHARD_BYTES, seed: int = 0, splits=None,
         rows_kept=None) -> list[ShardPlan]:
    """Which archive rows go into which shard, in which order (deterministic); ``rows_kept``: a
    boolean mask of the rows a selection keeps (default: all)."""
    with h5py.File(archive_path, "r") as f:
        split_col = f["split"].asstr()[:]
    if not len(split_col):
        return []
    if rows_kept is not None:
        split_col = np.where(rows_kept, split_col, "")
    per_shard = max(1, shard_bytes // sample_size(archive_path))
    out = []
    for s_i, split in enumerate(SPLITS):
        if splits is not None and split not in splits:
            continue
        rows = np.flatnonzero(split_col == split)
        rows = np.random.default_rng([seed, s_i]).permutation(rows)
        for k, start in enumerate(range(0, len(rows), per_shard)):
            out.append(ShardPlan(split, shard_file(split, k), rows[start:start + per_shard].tolist()))
    return out


def shards_bytes(archive_path, todo: list[ShardPlan]) -> tuple[int, int]:
    """(bytes, samples) of the shards of ``todo``: every sample's tar members as the first one's
    (the arrays are fixed; the JSON members differ by a few bytes), plus each tar's end blocks."""
    n = sum(len(p.indices) for p in todo)
    return (n * sample_size(archive_path) + 1024 * len(todo) if n else 0), n


def check_disk(archive_path, out_dir: Path, todo: list[ShardPlan]) -> None:
    """Refuse, before writing, shards that cannot fit the free disk: one line, nothing changed."""
    (need, n), free = shards_bytes(archive_path, todo), free_bytes(out_dir)
    if free is not None and need > free:
        raise EnvironmentFailure(f"{out_dir}: the shards need about {size_text(need)} ({n} samples in {len(todo)} "
                                 f"shard(s) to write) and {size_text(free)} is free there; free space or choose "
                                 f"another --out (--splits or --select write fewer)")


def write_shard(archive_path, p: ShardPlan, out_dir, fp: str) -> dict:
    """Write one shard atomically, every sample's ``meta.json`` naming the shard's fingerprint
    ``fp``; returns its index entry, with the key of its first sample (a reader tells a shard of
    another build from a truncated one by it) and ``fp``."""
    final = Path(out_dir) / p.file
    first = None
    with atomic_path(final) as tmp, open(tmp, "wb") as fh, h5py.File(archive_path, "r") as f:
        tw = wds.TarWriter(fh, mtime=MTIME)
        try:
            digests = archive.stored_pixel_digests(f)
            for i in p.indices:
                rec = _record(f, i, archive_path)
                # pixels edited after the build (h5py recomputes Fletcher-32 on write) are named, not sharded
                archive.check_pixels(archive_path, rec.name, None if digests is None else digests[i],
                                     {k: getattr(rec, k) for k in archive.ARRAY_KEYS})
                sample = encode(rec, shard=fp)
                first = first or sample["__key__"]
                tw.write(sample)
            tw.close()
        except BaseException:
            _abandon(tw)
            raise
    # the fingerprint in the index too: readers compare each sample's with it, a rerun reuses the
    # shard after .progress/ is gone
    return {"file": p.file, "samples": len(p.indices), "bytes": final.stat().st_size, "sha256": sha256_file(final),
            "first_key": first, "fingerprint": fp}


def _abandon(tw: wds.TarWriter) -> None:
    """A tar writer whose shard failed (a full disk, damage, a stop): its stream's buffered tail is
    dropped. Left to the garbage collector, tarfile writes it to the closed file and prints an
    "Exception ignored ... write to closed file" traceback after the command's one line."""
    stream = tw.tarstream.fileobj
    stream.buf = b""
    stream.closed = tw.tarstream.closed = True


def _record(f, i: int, path):
    """One patch of the archive; a damaged chunk is an InputError naming the archive, the
    dataset and the row."""
    try:
        return archive.read_record(f, i)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        bad = next((k for k in f if not _readable(f[k], i)), "?")
        raise InputError(path, f"dataset {bad!r} cannot be read at row {i} (damaged archive? "
                               f"{str(e).splitlines()[0][:200]})") from None


def _readable(ds, i: int) -> bool:
    try:
        ds[i]
        return True
    except Exception:  # noqa: BLE001 - probing which dataset is damaged
        return False


def _marker(out_dir: Path, p: ShardPlan) -> Path:
    return out_dir / ".progress" / (p.file + ".json")


def _done(out_dir: Path, p: ShardPlan, fp: str) -> dict | None:
    """The entry of a shard finished by an earlier run with the same plan, if its file is intact
    (size and sha256 as recorded: a damaged shard is written again)."""
    return done_record(_marker(out_dir, p), out_dir / p.file, fp)


def _write_task(archive_path: str, p: ShardPlan, out_dir: str, fp: str) -> dict:
    entry = write_shard(archive_path, p, out_dir, fp)
    return mark_done(_marker(Path(out_dir), p), Path(out_dir) / p.file, fp, entry, sha256=entry["sha256"])


def _source(archive_path: Path, checked: "archive.Checked") -> tuple[str, dict]:
    """(archive sha256, band statistics): the statistics the archive keeps under its digests (the
    manifest, checked against them, must agree), else the manifest's (checked against its own
    digests: archives built before they kept them), else computed here."""
    sha, manifest = checked.sha256, checked.manifest
    with archive.reading(archive_path) as f:
        own = f.attrs.get("band_stats")
    if own is not None:
        return sha, json.loads(own)
    if manifest is not None and "band_stats" in manifest:
        return sha, manifest["band_stats"]
    with archive.reading(archive_path) as f:
        stats = of_archive(f, lambda f, key, sel: archive.read_dataset(f, key, sel, archive_path))
    return sha, stats.normalisation()


def members_doc() -> dict:
    with_bands = {k: list(bands) for k, (bands, _) in archive.BAND_ATTRS.items()}
    doc = {m: {"field": key, "dtype": ARRAYS[key][1], "shape": list(ARRAYS[key][0]), "bands": with_bands[key],
               "resolution_m": archive.BAND_ATTRS[key][1]} for m, key in NPY_MEMBERS.items()}
    doc["labels.json"] = {"keys": ["names", "names_19", "multi_hot", "multi_hot_19"]}
    doc["meta.json"] = {"keys": [*META_FIELDS, SHARD_KEY, "crc32c", SELF_KEY]}
    return doc


def write_shards(archive_path, out_dir, shard_bytes: int | str = DEFAULT_SHARD_BYTES, seed: int = 0, splits=None,
                 workers: int = 1, manifest_path=None, progress: bool = True, wait: bool = False,
                 allow_unchecked: bool = False, select=None) -> dict:
    """Write every split's shards and ``index.json``; returns the index. The folder is locked for
    the run (a second writer ends at once, or waits with ``wait``); shards of an earlier run that
    the new index does not list are removed. ``select``: a file naming the patches to write
    (``shards.select``; default: all)."""
    archive_path, out_dir = Path(archive_path), Path(out_dir)
    shard_bytes = parse_size(shard_bytes)
    named = manifest_path
    if manifest_path is None:
        manifest_path = archive_path.with_name("manifest.json")
    elif not Path(manifest_path).is_file():  # named, so meant: not silently replaced by computed statistics
        raise InputError(manifest_path, "no such build manifest (--manifest)")
    with folder_lock(out_dir, wait, "shards run"), disk_full_named(out_dir):
        # every reader's check of the archive (archive.check): what one refuses, all refuse
        checked = archive.check(archive_path, named, allow_unchecked, need_sha=True)
        return _write_all(archive_path, out_dir, shard_bytes, seed, splits, workers, Path(manifest_path), progress,
                          checked, select)


def _write_all(archive_path: Path, out_dir: Path, shard_bytes: int, seed: int, splits, workers: int,
               manifest_path: Path, progress: bool, checked: "archive.Checked", select=None) -> dict:
    checksummed = checked.checksummed  # the chunks' Fletcher-32 and the pixels' digests are checked as they are read
    with archive.reading(archive_path) as f:
        names = archive.read_dataset(f, "name", slice(None), archive_path).astype(str)
        # BigEarthNet patches (v1 or v2 inputs) name their v1 patch: the shards keep BigEarthNet's licence
        from_bigearthnet = "v1_name" in f and bool(np.any(f["v1_name"].asstr()[:] != ""))
    rows_kept, selection = None, None
    if select is not None:
        chosen = read_selection(select)
        check_known(select, chosen, names, archive_path)
        rows_kept = np.isin(names, chosen)
        selection = {"sha256": selection_digest(chosen), "patches": len(chosen)}
    source_sha, stats = _source(archive_path, checked)
    if not checksummed and not manifest_path.exists():
        print(f"note: {archive_path}: carries no checksums (built before archives did) and has no manifest.json "
              f"beside it: damage that still decodes cannot be detected", file=sys.stderr, flush=True)
    plans = plan(archive_path, shard_bytes, seed, splits, rows_kept)
    empty = [sp for sp in (splits or []) if not any(p.split == sp for p in plans)]
    if empty:  # asked for by name: an index without it would read as a finished, empty split
        held = sorted({p.split for p in plan(archive_path, shard_bytes, seed, None, rows_kept)})
        raise OptionError(f"--splits: {archive_path} has no {'selected ' if select else ''}patch in split(s) "
                          f"{', '.join(empty)} (it holds {', '.join(held) or 'none'})")
    previous = _previous_entries(out_dir)
    fps = {p.file: p.fingerprint(source_sha, [names[i] for i in p.indices]) for p in plans}
    entries = {p.file: e for p in plans
               if (e := _done(out_dir, p, fps[p.file]) or _intact(out_dir, previous.get(p.file), fps[p.file]))}
    todo = [p for p in plans if p.file not in entries]
    check_disk(archive_path, out_dir, todo)  # before anything here is changed
    # the folder is being rewritten: until the new index is in place it claims no complete set
    (out_dir / INDEX_NAME).unlink(missing_ok=True)
    (out_dir / ".progress").mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(plans), initial=len(entries), unit="shard", desc="shards", disable=not progress)
    workers = capped("--shard-workers", workers, {f"{usable_cores()} usable cores": usable_cores(),
                                                  f"{len(todo)} shards to write": len(todo)})
    if workers <= 1:
        for p in todo:
            entries[p.file] = _write_task(str(archive_path), p, str(out_dir), fps[p.file])
            bar.update()
    else:
        start_helpers_shielded()
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=ignore_in_worker) as pool:
            futs = {pool.submit(_write_task, str(archive_path), p, str(out_dir), fps[p.file]): p for p in todo}
            for fut in as_completed(futs):
                entries[futs[fut].file] = fut.result()
                bar.update()
    bar.close()
    split_docs: dict[str, dict] = {}
    for p in plans:
        d = split_docs.setdefault(p.split, {"samples": 0, "bytes": 0, "shards": []})
        e = entries[p.file]
        d["samples"] += e["samples"]
        d["bytes"] += e["bytes"]
        d["shards"].append(e)
    index = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "version": __version__,
        "source": {"archive": archive_path.name, "sha256": source_sha},
        "config": {"seed": seed, "shard_bytes": shard_bytes, "splits": sorted(split_docs),
                   **({"selection": selection} if selection else {})},
        "members": members_doc(),
        "class_names": list(nom.CLASS_NAMES), "class_names_19": list(nom.CLASS_NAMES_19),
        "value_convention": VALUE_CONVENTION,
        "band_stats": stats,
        "samples": sum(d["samples"] for d in split_docs.values()),
        "splits": split_docs,
    }
    index["digests"] = field_digests(index, INDEX_FIELDS)  # what readers act on, each checked when read
    write_text(out_dir / INDEX_NAME, json.dumps(index, indent=1))
    croissant.write(out_dir, index, from_bigearthnet)  # the same shards described for dataset catalogues
    remove_unlisted(out_dir, index)
    shutil.rmtree(out_dir / ".progress", ignore_errors=True)  # the index holds what a rerun needs
    return index


def _previous_entries(out_dir: Path) -> dict:
    """The shard entries of the index a finished earlier run left here ({} when there is none or
    it cannot be read: its shards are then checked against their markers, or written again)."""
    try:
        index, _ = read_index(out_dir / INDEX_NAME)
    except InputError:
        return {}
    return {e["file"]: e for d in index["splits"].values() for e in d["shards"]}


def _intact(out_dir: Path, entry: dict | None, fp: str) -> dict | None:
    """``entry`` of an earlier index, when it was made from the same inputs (``fp``) and its file is
    as the index records it (size and sha256)."""
    if not entry or entry.get("fingerprint") != fp:
        return None
    path = out_dir / entry["file"]
    try:
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            return None
    except OSError:
        return None
    return entry


def unlisted(out_dir: Path, index: dict) -> list[Path]:
    """Files of the writer's own naming in ``out_dir`` that ``index`` does not list (shards of an
    earlier run with other options): glob-based readers would read them as part of the set."""
    listed = listed_files(index)
    return sorted(p for p in Path(out_dir).iterdir() if OWN_FILES.match(p.name) and p.name not in listed)


def remove_unlisted(out_dir: Path, index: dict) -> None:
    """A writer owns its folder: its own files that the new index does not list are removed, with
    their progress markers."""
    listed = listed_files(index)
    for p in unlisted(out_dir, index):
        p.unlink(missing_ok=True)
    progress = Path(out_dir) / ".progress"
    if progress.is_dir():
        for m in progress.iterdir():
            if m.name.removesuffix(".json") not in listed:
                m.unlink(missing_ok=True)
