"""The shard index (``index.json``): reading it, a split's shard entries, and checking a folder
against it."""
from __future__ import annotations

from pathlib import Path

from bigearth.errors import InputError
from bigearth.files import read_json, sha256_file

INDEX_NAME = "index.json"


class IndexMissing(InputError, FileNotFoundError):
    pass


class IndexInvalid(InputError, ValueError):
    pass


class SplitMissing(InputError, KeyError):
    __str__ = Exception.__str__  # KeyError would quote the message


def listed_files(index: dict) -> set[str]:
    """The shard files an index lists, over all its splits."""
    return {e["file"] for d in index["splits"].values() for e in d["shards"]}


def read_index(source) -> tuple[dict, Path]:
    """``index.json`` (or the folder holding it) -> (index, folder of the shards)."""
    path = Path(source)
    if path.is_dir():
        path = path / INDEX_NAME
    index = read_json(path, "shard index", IndexMissing, IndexInvalid, " (write shards with `bigearth-sr shards`)")
    if index.get("format") != "bigearth-sr-shards" or not isinstance(index.get("splits"), dict):
        raise IndexInvalid(path, "not a bigearth-sr shard index")
    return index, path.parent


def shard_entries(index: dict, base: Path, split: str) -> list[dict]:
    if split not in index["splits"]:
        raise SplitMissing(base / INDEX_NAME, f"split {split!r} is not in the shards (they hold "
                                                     f"{', '.join(index['splits']) or 'none'})")
    return [{"url": str(base / e["file"]), "samples": e["samples"], "bytes": e.get("bytes"),
             "first_key": e.get("first_key")} for e in index["splits"][split]["shards"]]


def verify(source) -> list[str]:
    """Check every shard's size and sha256 against the index, and that the folder holds no tar
    the index does not list; returns the problems found."""
    index, base = read_index(source)
    listed = listed_files(index)
    problems = [f"{p}: not listed in {INDEX_NAME} (left from another run? readers that glob *.tar would read it)"
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
    return problems
