"""The shard index (``index.json``): reading it, a split's shard entries, and checking a folder
against it.

An index is data, not a list of paths to follow: a shard's ``file`` is a plain name inside the
index's folder. ``../x.tar``, absolute paths, names with a separator and links that lead out of
the folder are refused by every reader (``shard_entries``: the loader and the trainer) and by
``verify``, before anything is opened."""
from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

from bigearth.errors import InputError
from bigearth.files import check_field_digests, read_json, sha256_file, what_is

INDEX_NAME = "index.json"
# the fields readers act on (statistics, counts, shard entries...), digested in the index's "digests"
INDEX_FIELDS = ("source", "config", "members", "class_names", "class_names_19", "value_convention", "band_stats",
                "samples", "splits")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class IndexMissing(InputError, FileNotFoundError):
    pass


class IndexInvalid(InputError, ValueError):
    pass


class SplitMissing(InputError, KeyError):
    __str__ = Exception.__str__  # KeyError would quote the message


def listed_files(index: dict) -> set[str]:
    """The shard files an index lists, over all its splits."""
    return {e["file"] for d in index["splits"].values() for e in d["shards"]}


def format_version(index: dict) -> int:
    """The index's ``format_version``, 0 where it holds no integer (indexes before versions)."""
    v = index.get("format_version")
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def names_shards(index: dict) -> bool:
    """Whether the index's samples name the shard they were written into (format 4 on): readers
    then compare each sample's ``meta.json`` with the entry's ``fingerprint``."""
    return format_version(index) >= 4


def _check_entries(index: dict, path: Path) -> None:
    """The index's shape: every split a dict with a ``shards`` list, every entry a dict with a
    string ``file``, non-negative integer ``samples`` and ``bytes``, a hex ``sha256`` (and, from
    format 4, a hex ``fingerprint``)."""
    named = names_shards(index)
    for split, doc in index["splits"].items():
        if not isinstance(doc, dict) or not isinstance(doc.get("shards"), list):
            raise IndexInvalid(path, f"split {split!r} has no list of shards")
        for i, e in enumerate(doc["shards"]):
            where = f"split {split!r}, shard {i}"
            if not isinstance(e, dict) or not isinstance(e.get("file"), str):
                raise IndexInvalid(path, f"{where}: no file name")
            for key in ("samples", "bytes"):
                v = e.get(key)
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise IndexInvalid(path, f"{where} ({e['file']!r}): {key} is {v!r}, not a count")
            if not isinstance(e.get("sha256"), str) or not _SHA256.match(e["sha256"]):
                raise IndexInvalid(path, f"{where} ({e['file']!r}): sha256 is not 64 hex digits")
            if named and (not isinstance(e.get("fingerprint"), str) or not _SHA256.match(e["fingerprint"])):
                raise IndexInvalid(path, f"{where} ({e['file']!r}): fingerprint is not 64 hex digits (readers "
                                         f"compare every sample's with it)")


def read_index(source) -> tuple[dict, Path]:
    """``index.json`` (or the folder holding it) -> (index, folder of the shards)."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://|^pipe:", str(source)):
        raise IndexMissing(source, "URLs are not supported: copy the shard folder (index.json and its .tar files) "
                                   "to a local or mounted file system and give that folder")
    path = Path(source)
    if not path.exists():
        raise IndexMissing(path, "no such shards folder (give the folder `bigearth-sr shards --out` wrote)")
    if path.is_dir():
        if not (path / INDEX_NAME).exists():
            raise IndexMissing(path / INDEX_NAME, f"shard index is missing: {path} is {what_is(path)}, not a shards folder "
                                                  f"(write shards with `bigearth-sr shards`)")
        path = path / INDEX_NAME
    elif path.name != INDEX_NAME and not (kind := what_is(path)).startswith("a JSON"):
        raise IndexInvalid(path, f"is {kind}, not a shards folder: give the folder `bigearth-sr shards` "
                                 f"wrote (it holds {INDEX_NAME} and the .tar shards)")
    index = read_json(path, "shard index", IndexMissing, IndexInvalid, " (write shards with `bigearth-sr shards`)")
    if index.get("format") != "bigearth-sr-shards" or not isinstance(index.get("splits"), dict):
        raise IndexInvalid(path, "not a bigearth-sr shard index")
    try:
        digested = check_field_digests(index, path, "shard index")
    except InputError as e:
        raise IndexInvalid(path, e.problem) from None
    if not digested and format_version(index) >= 2:
        raise IndexInvalid(path, "its 'digests' are missing (indexes of this format record them): it was changed "
                                 "after it was written; write the shards again")
    _check_entries(index, path)
    return index, path.parent


def shard_path(base: Path, name: str) -> Path:
    """The shard ``name`` of the index in ``base``: a plain file name in that folder, or an
    IndexInvalid naming the index. A link is followed only where it stays in the folder."""
    index_path = Path(base) / INDEX_NAME
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or os.path.isabs(name) or Path(name).name != name):
        raise IndexInvalid(index_path, f"shard file {name!r} is not a plain file name in the index's folder "
                                       f"(an index names its shards, it does not point elsewhere)")
    path = Path(base) / name
    if path.is_symlink():
        target, root = path.resolve(), Path(base).resolve()
        if target.parent != root and root not in target.parents:
            raise IndexInvalid(index_path, f"shard file {name!r} is a link out of the index's folder (to {target})")
    return path


def shard_entries(index: dict, base: Path, split: str) -> list[dict]:
    if split not in index["splits"]:
        raise SplitMissing(base / INDEX_NAME, f"split {split!r} is not in the shards (they hold "
                                                     f"{', '.join(index['splits']) or 'none'})")
    entries = index["splits"][split]["shards"]
    for key, _, places in _repeated({split: index["splits"][split]})[:1]:  # read twice an epoch: refused
        (first, again) = (p.split(":", 1)[1] for p in places[:2])
        raise IndexInvalid(base / INDEX_NAME, f"split {split!r} lists the shard {again!r} twice (by {key}, also as "
                                              f"{first!r}): write the shards again")
    named = names_shards(index)
    return [{"url": str(shard_path(base, e["file"])), "samples": e["samples"], "bytes": e.get("bytes"),
             "first_key": e.get("first_key"), "fingerprint": e["fingerprint"] if named else None} for e in entries]


def _samples_in(path: Path) -> int:
    """Samples in a tar shard: its distinct member keys (the name up to the first dot)."""
    with tarfile.open(path, "r:") as tf:
        return len({m.name.split(".", 1)[0] for m in tf.getmembers() if m.isfile()})


def _consistency(index: dict) -> list[str]:
    """The index against itself: each split's totals are the sums of its shards', the index's
    total the sum of its splits', and no shard is listed twice (by name or by content)."""
    problems = []
    for split, doc in index["splits"].items():
        for key in ("samples", "bytes"):
            total = sum(e[key] for e in doc["shards"])
            if key in doc and doc[key] != total:
                problems.append(f"{INDEX_NAME}: split {split!r} says {doc[key]} {key}, its shards add up to {total}")
    if "samples" in index:
        total = sum(d.get("samples", sum(e["samples"] for e in d["shards"])) for d in index["splits"].values())
        if index["samples"] != total:
            problems.append(f"{INDEX_NAME}: says {index['samples']} samples, its splits add up to {total}")
    for _, what, places in _repeated(index["splits"]):
        problems.append(f"{INDEX_NAME}: the same shard {what} is listed {len(places)} times "
                        f"({', '.join(places)}): its samples would be read twice")
    return problems


def _repeated(splits: dict) -> list[tuple[str, str, list[str]]]:
    """(key, what, ["split:file", ...]) for each shard name or content (sha256) listed more than
    once in ``splits`` ({split: its doc}): the readers refuse such a split, verify-shards reports it."""
    out = []
    for key, what in (("file", "name"), ("sha256", "content (sha256)")):
        where: dict[str, list[str]] = {}
        for split, doc in splits.items():
            for e in doc["shards"]:
                where.setdefault(e[key], []).append(f"{split}:{e['file']}")
        out += [(key, what, places) for places in where.values() if len(places) > 1]
    return out


def verify(source) -> list[str]:
    """Check the index against itself (totals, no shard listed twice), every shard's name (a
    plain name in the folder), size, sha256 and sample count against the index, and that the
    folder holds no tar the index does not list; returns the problems found."""
    index, base = read_index(source)
    for doc in index["splits"].values():  # a name that points elsewhere ends the check before anything is opened
        for e in doc["shards"]:
            shard_path(base, e["file"])
    problems = _consistency(index)
    listed = listed_files(index)
    problems += [f"{p}: not listed in {INDEX_NAME} (left from another run? readers that glob *.tar would read it)"
                 for p in sorted(base.glob("*.tar")) if p.name not in listed]
    for doc in index["splits"].values():
        for e in doc["shards"]:
            p = base / e["file"]
            if not p.exists():
                problems.append(f"{p}: missing")
            elif p.stat().st_size != e["bytes"]:
                problems.append(f"{p}: {p.stat().st_size} bytes, the index says {e['bytes']}")
            elif sha256_file(p) != e["sha256"]:
                problems.append(f"{p}: sha256 differs from the index")
            else:
                try:
                    n = _samples_in(p)
                except (tarfile.TarError, OSError) as err:
                    problems.append(f"{p}: not a readable tar ({err})")
                    continue
                if n != e["samples"]:
                    problems.append(f"{p}: holds {n} samples, the index says {e['samples']}")
    return problems
