"""HDF5 archive -> WebDataset tar shards per split, plus the shard index.

Each split's patches are shuffled with a seed (across tiles: a shard mixes many tiles) and
dealt into shards of equal sample count, sized so a shard is close to the byte target; equal
counts keep ranks balanced when shards are split by node. Every shard is written to
``<name>.tmp`` and renamed; a marker in ``.progress/`` records its checksum so a rerun skips
finished shards. ``index.json`` is written last, so its presence means a complete set.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (Blosc filters of the archive)
import numpy as np
import webdataset as wds
from tqdm import tqdm

from bigearth import __version__
from bigearth import nomenclature as nom
from bigearth.files import sha256_file
from bigearth.record import ARRAYS, SPLITS, VALUE_CONVENTION
from dataset_builder import archive

from .sample import NPY_MEMBERS, encode, tar_bytes

INDEX_NAME = "index.json"
FORMAT = "bigearth-sr-shards"
FORMAT_VERSION = 1
DEFAULT_SHARD_BYTES = 256 * 2**20
MTIME = 0  # fixed member times: the same archive and seed give byte-identical shards


def shard_file(split: str, i: int) -> str:
    return f"bigearth_sr-{split}-{i:06d}.tar"


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
    """``"256MB"``, ``"1.5GiB"``, ``"300000"`` -> bytes."""
    if isinstance(text, int):
        return text
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    t = text.strip().upper()
    num = t.rstrip("KMGIB")
    try:
        return int(float(num) * units[t[len(num):]])
    except (KeyError, ValueError):
        raise ValueError(f"cannot read a size from {text!r} (e.g. 256MB, 1GiB, 300000)") from None


def sample_size(archive_path) -> int:
    """Tar bytes of one encoded sample (all samples have the same arrays; JSON differs by bytes)."""
    with h5py.File(archive_path, "r") as f:
        return tar_bytes(encode(archive.read_record(f, 0)))


def plan(archive_path, shard_bytes: int = DEFAULT_SHARD_BYTES, seed: int = 0, splits=None) -> list[ShardPlan]:
    """Which archive rows go into which shard, in which order (deterministic)."""
    with h5py.File(archive_path, "r") as f:
        split_col = f["split"].asstr()[:]
    if not len(split_col):
        return []
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


def write_shard(archive_path, p: ShardPlan, out_dir) -> dict:
    """Write one shard atomically; returns its index entry."""
    out_dir = Path(out_dir)
    final, tmp = out_dir / p.file, out_dir / (p.file + ".tmp")
    try:
        with open(tmp, "wb") as fh, h5py.File(archive_path, "r") as f:
            tw = wds.TarWriter(fh, mtime=MTIME)
            for i in p.indices:
                tw.write(encode(archive.read_record(f, i)))
            tw.close()
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"file": p.file, "samples": len(p.indices), "bytes": final.stat().st_size, "sha256": sha256_file(final)}


def _marker(out_dir: Path, p: ShardPlan) -> Path:
    return out_dir / ".progress" / (p.file + ".json")


def _done(out_dir: Path, p: ShardPlan, fp: str) -> dict | None:
    """The entry of a shard finished by an earlier run with the same plan, if its file is intact."""
    m = _marker(out_dir, p)
    if not m.exists():
        return None
    info = json.loads(m.read_text())
    path = out_dir / p.file
    if info.get("fingerprint") != fp or not path.exists() or path.stat().st_size != info["entry"]["bytes"]:
        return None
    return info["entry"]


def _write_task(archive_path: str, p: ShardPlan, out_dir: str, fp: str) -> dict:
    entry = write_shard(archive_path, p, out_dir)
    m = _marker(Path(out_dir), p)
    tmp = m.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": fp, "entry": entry}))
    os.replace(tmp, m)
    return entry


def _source(archive_path: Path, manifest_path: Path | None) -> tuple[str, dict]:
    """(archive sha256, band statistics): from the build manifest, else computed here."""
    if manifest_path is not None and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        sha = manifest.get("outputs", {}).get(archive_path.name)
        if sha and "band_stats" in manifest:
            return sha, manifest["band_stats"]
    from dataset_builder.build import _Stats, band_stats
    stats = _Stats()
    with h5py.File(archive_path, "r") as f:
        n = f["name"].shape[0]
        for start in range(0, n, 256):
            stats.add({k: f[k][start:start + 256] for k in archive.ARRAY_KEYS})
    return sha256_file(archive_path), band_stats([{"status": "ok", "stats": stats.to_json()}])


def members_doc() -> dict:
    with_bands = {k: list(bands) for k, (bands, _) in archive.BAND_ATTRS.items()}
    doc = {m: {"field": key, "dtype": ARRAYS[key][1], "shape": list(ARRAYS[key][0]), "bands": with_bands[key],
               "resolution_m": archive.BAND_ATTRS[key][1]} for m, key in NPY_MEMBERS.items()}
    doc["labels.json"] = {"keys": ["names", "names_19", "multi_hot", "multi_hot_19"]}
    doc["meta.json"] = {"keys": ["name", "product", "tile", "date", "x", "y", "crs", "bounds", "split", "crc32c"]}
    return doc


def write_shards(archive_path, out_dir, shard_bytes: int | str = DEFAULT_SHARD_BYTES, seed: int = 0, splits=None,
                 workers: int = 1, manifest_path=None, progress: bool = True) -> dict:
    """Write every split's shards and ``index.json``; returns the index."""
    archive_path, out_dir = Path(archive_path), Path(out_dir)
    shard_bytes = parse_size(shard_bytes)
    if manifest_path is None:
        manifest_path = archive_path.with_name("manifest.json")
    (out_dir / ".progress").mkdir(parents=True, exist_ok=True)
    source_sha, stats = _source(archive_path, Path(manifest_path))
    plans = plan(archive_path, shard_bytes, seed, splits)
    with h5py.File(archive_path, "r") as f:
        names = f["name"].asstr()[:]
    fps = {p.file: p.fingerprint(source_sha, [names[i] for i in p.indices]) for p in plans}
    entries = {p.file: e for p in plans if (e := _done(out_dir, p, fps[p.file])) is not None}
    todo = [p for p in plans if p.file not in entries]
    bar = tqdm(total=len(plans), initial=len(entries), unit="shard", desc="shards", disable=not progress)
    if workers <= 1:
        for p in todo:
            entries[p.file] = _write_task(str(archive_path), p, str(out_dir), fps[p.file])
            bar.update()
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
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
        "config": {"seed": seed, "shard_bytes": shard_bytes, "splits": sorted(split_docs)},
        "members": members_doc(),
        "class_names": list(nom.CLASS_NAMES), "class_names_19": list(nom.CLASS_NAMES_19),
        "value_convention": VALUE_CONVENTION,
        "band_stats": stats,
        "samples": sum(d["samples"] for d in split_docs.values()),
        "splits": split_docs,
    }
    tmp = out_dir / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out_dir / INDEX_NAME)
    return index
