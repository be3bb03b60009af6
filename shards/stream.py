"""Tar members grouped into samples, checked and decoded to a variant's arrays; damage (and only
damage) is raised as ShardError or, with ``on_error="skip"``, logged and counted."""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import tarfile
from pathlib import Path

from bigearth.errors import ReportedError
from bigearth.record import RGB_INDEX

from .sample import MEMBERS, SELF_KEY, SHARD_KEY, SampleError, check, decode_array, decode_labels, shard_mark
from .tar import local_path, member_key, tar_members

log = logging.getLogger("bigearth.shards")

VARIANTS = {  # variant -> members it needs besides labels.json and meta.json
    "super": ("super.npy",),
    "rgb": ("super.npy",),
    "native": ("10m.npy", "20m.npy", "60m.npy"),
}


class ShardError(RuntimeError, ReportedError):
    """A shard that cannot be read: truncated, corrupted, or not what the index says."""


# errors about the index: InputErrors (named file, one line in a command) that are also the
# builtin type callers of the library catch


class Skipped:
    """What ``on_error="skip"`` dropped, counted across DataLoader worker processes."""

    def __init__(self):
        self._shards = mp.Value("q", 0)
        self._samples = mp.Value("q", 0)

    def add(self, shards: int = 0, samples: int = 0) -> None:
        with self._shards.get_lock():
            self._shards.value += shards
            self._samples.value += samples

    @property
    def shards(self) -> int:
        return self._shards.value

    @property
    def samples(self) -> int:
        return self._samples.value

    def __repr__(self):
        return f"Skipped(shards={self.shards}, samples={self.samples})"


def fail(err: ShardError, on_error: str, skipped: Skipped | None, shards: int = 0, samples: int = 0) -> None:
    if on_error == "raise":
        raise err
    log.warning("skipped: %s (%d sample(s) lost)", err, samples)
    if skipped is not None:
        skipped.add(shards, samples)


def tar_samples(src, expected: dict[str, int], wanted=None, on_error="raise", skipped=None):
    """Shard entries -> samples ``{"__key__", "__url__", "__offset__", member: bytes}``.

    Members are grouped by key as webdataset does. Members not in ``wanted``, and samples outside
    an entry's ``start``/``stop`` slice, are skipped unread. A shard that is truncated,
    corrupted, holds incomplete samples or not the count the index records is an error naming
    the shard and the byte offset where it went wrong. So is a sample whose ``meta.json`` names
    another shard than the entry's ``fingerprint``: the file is not the shard the index lists
    (another build's, renamed or copied over it), found before its first sample is used.
    """
    for entry in src:
        url = entry["url"]
        mark = shard_mark(entry["fingerprint"]) if entry.get("fingerprint") else None
        n_expected = expected.get(url)
        start, stop = entry.get("start", 0), entry.get("stop")
        count, state = 0, {"offset": 0}
        order = {"key": None, "index": -1}  # the sample each member belongs to, as tar_members reads them

        def want(name, order=order, start=start, stop=stop):
            key, ext = member_key(name)
            if key != order["key"]:
                order["key"], order["index"] = key, order["index"] + 1
            inside = order["index"] >= start and (stop is None or order["index"] < stop)
            return inside and (wanted is None or ext in wanted)

        try:
            cur, seen, index = None, set(), -1
            for info, data in tar_members(url, want, state):
                offset = info.offset
                key, ext = member_key(info.name)
                if "." not in info.name.rsplit("/", 1)[-1]:
                    raise ShardError(f"{url}: member {info.name!r} has no extension (at byte offset {offset})")
                if cur is None and entry.get("first_key") and key != entry["first_key"]:
                    raise ShardError(f"{url}: its first sample is {key!r}, the index says {entry['first_key']!r}: "
                                     f"the index belongs to another build of this folder (write the shards again)")
                if cur is None or key != cur["__key__"]:
                    if cur is not None:
                        _complete(cur, seen, url)
                        _own(cur, mark, entry)
                        if index >= start:
                            yield cur
                        count += 1
                    index += 1
                    if stop is not None and index >= stop:
                        break  # the rest of the shard is another worker's or rank's
                    cur, seen = {"__key__": key, "__url__": url, "__offset__": offset}, set()
                if ext in seen:
                    raise ShardError(f"{url}: sample {key!r} has {ext} twice (at byte offset {offset})")
                seen.add(ext)
                if data is not None:
                    cur[ext] = data
            else:
                if cur is not None:
                    _complete(cur, seen, url)
                    _own(cur, mark, entry)
                    if index >= start:
                        yield cur
                    count += 1
                if n_expected is not None and count != n_expected:
                    raise ShardError(f"{url}: holds {count} samples, the index says {n_expected} (ends at byte offset "
                                     f"{state['offset']}); {_diagnose(entry)}")
            if stop is not None and count < stop:
                raise ShardError(f"{url}: holds {count} samples, the index says {n_expected} (ends at byte offset "
                                 f"{state['offset']}); {_diagnose(entry)}")
        except (ShardError, tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as e:  # what damage raises
            if not isinstance(e, ShardError):
                e = ShardError(f"{url}: {type(e).__name__}: {e} (at byte offset {state['offset']}, after {count} "
                               f"complete sample(s))")
            fail(e, on_error, skipped, 1, max((stop if stop is not None else (n_expected or count)) - max(count, start), 0))


def _diagnose(entry: dict) -> str:
    """Why a shard does not hold what the index says, as far as its size tells."""
    path = local_path(entry["url"])
    if path is None or entry.get("bytes") is None:
        return "truncated, or not the shard the index lists"
    size = Path(path).stat().st_size
    if size < entry["bytes"]:
        return f"truncated: {size} bytes, the index says {entry['bytes']}"
    return (f"{size} bytes, the index says {entry['bytes']}: not the shard the index lists (an index of another "
            f"build? `bigearth-sr verify-shards` checks every shard)")


def _own(sample: dict, mark: bytes | None, entry: dict) -> None:
    """The sample was written into the shard the index lists: its ``meta.json`` holds the entry's
    fingerprint (a byte search, ~1 µs; the message parses it). Samples left unread (outside this
    reader's slice), and indexes written before samples named their shard, are not compared."""
    meta = sample.get("meta.json")
    if mark is None or meta is None or mark in meta:
        return
    try:
        theirs = json.loads(meta).get(SHARD_KEY)
    except (ValueError, AttributeError):  # damage: the sample's own check names it
        theirs = None
    said = (f"names shard {theirs[:12]}…" if isinstance(theirs, str) else
            "names no shard (written before samples did)")
    raise ShardError(f"{entry['url']}: sample {sample['__key__']!r} at byte offset {sample['__offset__']} {said}, "
                     f"the index lists {entry['fingerprint'][:12]}… for this file: it is not the shard the index "
                     f"lists (another build's shard copied or renamed over it?); `bigearth-sr verify-shards` "
                     f"checks every shard, `bigearth-sr shards` writes them again")


def _complete(sample: dict, seen: set, url: str) -> None:
    missing = [m for m in MEMBERS if m not in seen]
    if missing:
        raise ShardError(f"{url}: sample {sample['__key__']!r} at byte offset {sample['__offset__']} "
                         f"lacks {', '.join(missing)} (truncated shard?)")


def decode_samples(src, variant: str, labels: int, verify: bool, with_meta: bool, on_error="raise", skipped=None):
    """Samples -> ``{"x", "y"[, "meta"]}`` numpy arrays of the variant; CRC-checked when ``verify``."""
    need = VARIANTS[variant]
    for s in src:
        try:
            meta = check(s, (*need, "labels.json"), verify)
            c43, c19 = decode_labels(s)
            if variant == "native":
                x = {m.split(".")[0]: decode_array(s, m) for m in need}
            else:
                x = decode_array(s, "super.npy")
                if variant == "rgb":
                    x = x[RGB_INDEX]
            out = {"x": x, "y": c43 if labels == 43 else c19}
            if with_meta:  # the patch's fields; the container's own are left out
                for k in ("crc32c", SELF_KEY, SHARD_KEY):
                    meta.pop(k, None)
                out["meta"] = meta
            yield out
        except SampleError as e:  # damage only: any other exception is a bug and surfaces
            fail(ShardError(f"{s['__url__']}: sample {s['__key__']!r} at byte offset {s['__offset__']}: {e}"),
                  on_error, skipped, 0, 1)
