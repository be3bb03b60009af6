"""Streaming the shards into PyTorch, as a webdataset pipeline of small stages.

shards of the split -> this rank's share (or resampled draws) -> this DataLoader worker's share
-> tar members grouped into samples (errors name the shard and byte offset) -> shuffle buffer
-> checked and decoded to the chosen variant -> per-band normalisation -> batches of tensors.

Shards are divided whole between ranks, then between workers, so in the default mode N ranks
x M workers read a partition of the split. In resampled mode every worker draws shards at
random forever and an epoch is a sample count taken from the index.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import random
import tarfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from webdataset.utils import make_seed

from bigearth.distinfo import rank_world
from bigearth.errors import InputError, ReportedError
from bigearth.record import RGB_INDEX

from .sample import MEMBERS, SampleError, check, decode_array, decode_labels
from .writer import INDEX_NAME, sha256_file

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
class IndexMissing(InputError, FileNotFoundError):
    pass


class IndexInvalid(InputError, ValueError):
    pass


class SplitMissing(InputError, KeyError):
    __str__ = Exception.__str__  # KeyError would quote the message


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


def read_index(source) -> tuple[dict, Path]:
    """``index.json`` (or the folder holding it) -> (index, folder of the shards)."""
    path = Path(source)
    if path.is_dir():
        path = path / INDEX_NAME
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise IndexMissing(path, "no shard index (write shards with `bigearth-sr shards`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexInvalid(path, f"the shard index is not valid JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != "bigearth-sr-shards" \
            or not isinstance(index.get("splits"), dict):
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
    listed = {e["file"] for d in index["splits"].values() for e in d["shards"]}
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


# --------------------------------------------------------------------------- stages

def _worker() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class _Epoch:
    """Seeds that differ per epoch, rank and worker, and that ``set_epoch`` reaches in workers."""

    def __init__(self, seed: int, rank: int):
        self.seed, self.rank, self.epoch = seed, rank, 0

    def worker_seed(self) -> int:
        return make_seed(self.seed, self.rank, _worker()[0], self.epoch)


def epoch_order(entries: list[dict], shuffle: bool, epoch: _Epoch) -> list[dict]:
    """The split's shards in this epoch's order: the same on every rank (shuffled by seed and
    epoch), so that the ranks' shares below partition one sequence."""
    order = list(entries)
    if shuffle:
        random.Random(make_seed(epoch.seed, epoch.epoch)).shuffle(order)
    return order


def rank_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Positions [lo, hi) of ``rank`` in the epoch's sequence of ``n`` samples padded to a multiple
    of ``world`` (position p is sample p mod n: at most world - 1 samples repeat, as
    ``DistributedSampler`` pads): every rank gets the same count, ceil(n / world)."""
    per = -(-n // world) if n else 0
    return rank * per, (rank + 1) * per


def worker_range(lo: int, hi: int, worker: int, workers: int) -> tuple[int, int]:
    """A DataLoader worker's contiguous part of its rank's range (sizes differ by at most one)."""
    size = hi - lo
    return lo + size * worker // workers, lo + size * (worker + 1) // workers


def slices(order: list[dict], lo: int, hi: int) -> list[dict]:
    """Positions [lo, hi) of the sequence of ``order``'s samples as shard slices: entries with
    ``start``/``stop``, the samples of that shard to yield (positions past the end wrap)."""
    n = sum(e["samples"] for e in order)
    starts, acc = [], 0
    for e in order:
        starts.append(acc)
        acc += e["samples"]
    out, p = [], lo
    while p < hi and n:
        q = p % n
        i = next(i for i, s0 in enumerate(starts) if s0 <= q < s0 + order[i]["samples"])
        take = min(hi - p, starts[i] + order[i]["samples"] - q)
        out.append({**order[i], "start": q - starts[i], "stop": q - starts[i] + take})
        p += take
    return out


def epoch_slices(entries: list[dict], rank: int, world: int, shuffle: bool, epoch: _Epoch):
    """What this rank's DataLoader worker reads in this epoch: every sample of the split once over
    all ranks and workers (plus at most world - 1 repeats), without replacement, the same count
    on every rank, each worker reading only its own slices of the shards."""
    order = epoch_order(entries, shuffle, epoch)
    lo, hi = rank_range(sum(e["samples"] for e in order), rank, world)
    yield from slices(order, *worker_range(lo, hi, *_worker()))


def _fail(err: ShardError, on_error: str, skipped: Skipped | None, shards: int = 0, samples: int = 0) -> None:
    if on_error == "raise":
        raise err
    log.warning("skipped: %s (%d sample(s) lost)", err, samples)
    if skipped is not None:
        skipped.add(shards, samples)


def _ext(name: str) -> str:
    """A member's extension as webdataset keys it: everything after the first dot of the file name."""
    return name.rsplit("/", 1)[-1].partition(".")[2]


def _local_path(url: str) -> str | None:
    if url.startswith("file://"):
        return url[7:]
    return None if url.startswith("pipe:") or "://" in url else url


class _Member:
    """The TarInfo fields the reader uses."""

    __slots__ = ("name", "size", "offset", "offset_data")

    def __init__(self, name: str, size: int, offset: int, offset_data: int):
        self.name, self.size, self.offset, self.offset_data = name, size, offset, offset_data


def _octal(field: bytes, what: str) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for values that do not fit in octal
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise tarfile.ReadError(f"invalid {what} field in a tar header") from None


def _plain_members(fh, state: dict):
    """Regular members of a seekable tar of plain ustar/GNU headers, parsed directly: 5-10x
    less work per header than ``tarfile.TarInfo``, which dominated the reader's time
    (benchmarks/loaders.py). Anything else (pax or GNU long-name headers, links) raises
    ``_NotPlain`` so the caller falls back to ``tarfile``."""
    pos = 0
    while True:
        fh.seek(pos)
        hdr = fh.read(512)
        state["offset"] = pos
        if not hdr or hdr == _ZERO_BLOCK:
            return  # end of archive (a cut at a member boundary is caught by the sample count)
        if len(hdr) < 512:
            raise tarfile.ReadError("unexpected end of data")
        if _octal(hdr[148:156], "checksum") != sum(hdr[:148]) + 256 + sum(hdr[156:]):
            raise tarfile.ReadError("bad checksum in a tar header")
        kind = hdr[156:157]
        size = _octal(hdr[124:136], "size")
        if kind not in (b"0", b"\0", b"5"):
            raise _NotPlain
        name = hdr[:100].split(b"\0", 1)[0].decode()
        if hdr[257:262] == b"ustar" and hdr[345:346] != b"\0":
            name = hdr[345:500].split(b"\0", 1)[0].decode() + "/" + name
        if kind != b"5":
            yield _Member(name, size, pos, pos + 512)
        pos += 512 + -(-size // 512) * 512


class _NotPlain(Exception):
    pass


_ZERO_BLOCK = bytes(512)


def tar_members(url: str, want, state: dict):
    """(member, bytes or None) for each regular member of one shard; ``state["offset"]``
    follows the header being read. Local files are read by seeking: a member nobody wants is
    not read at all, and a wanted one is read straight into its own writable buffer (no copy
    downstream). Pipes and URLs (webdataset's ``gopen``) are streamed through ``tarfile``."""
    path = _local_path(url)
    if path is None:
        with wds.gopen(url, "rb") as fh:
            tf = tarfile.open(fileobj=fh, mode="r|")
            for info in tf:
                state["offset"] = info.offset
                tf.members = []  # tarfile would otherwise keep every TarInfo
                if not info.isreg():
                    continue
                if not want(info.name):
                    yield info, None
                    continue
                data = tf.extractfile(info).read()
                if len(data) != info.size:
                    raise tarfile.ReadError("unexpected end of data")
                yield info, data
            state["offset"] = tf.offset
        return
    with open(path, "rb") as fh:
        members = _plain_members(fh, state)
        done = 0
        while True:
            try:
                m = next(members)
            except StopIteration:
                return
            except _NotPlain:  # rare: headers tarfile knows and the fast path does not
                members = _tarfile_members(fh, done)
                continue
            done = m.offset_data + -(-m.size // 512) * 512
            if not want(m.name):
                yield m, None
                continue
            buf = bytearray(m.size)
            fh.seek(m.offset_data)
            if fh.readinto(buf) != m.size:
                raise tarfile.ReadError("unexpected end of data")
            yield m, buf


def _tarfile_members(fh, start: int):
    fh.seek(start)
    tf = tarfile.open(fileobj=fh, mode="r:")  # offsets it reports are positions in fh
    while (info := tf.next()) is not None:
        tf.members = []
        if info.isreg():
            yield _Member(info.name, info.size, info.offset, info.offset_data)


def _key(name: str) -> tuple[str, str]:
    """(sample key, extension) of a member name, as webdataset splits them: the key ends at the
    first dot of the file name."""
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return name[:len(name) - len(base)] + key, ext


def tar_samples(src, expected: dict[str, int], wanted=None, on_error="raise", skipped=None):
    """Shard entries -> samples ``{"__key__", "__url__", "__offset__", member: bytes}``.

    Members are grouped by key as webdataset does. Members not in ``wanted``, and samples outside
    an entry's ``start``/``stop`` slice, are skipped unread. A shard that is truncated,
    corrupted, holds incomplete samples or not the count the index records is an error naming
    the shard and the byte offset where it went wrong.
    """
    for entry in src:
        url = entry["url"]
        n_expected = expected.get(url)
        start, stop = entry.get("start", 0), entry.get("stop")
        count, state = 0, {"offset": 0}
        order = {"key": None, "index": -1}  # the sample each member belongs to, as tar_members reads them

        def want(name, order=order, start=start, stop=stop):
            key, ext = _key(name)
            if key != order["key"]:
                order["key"], order["index"] = key, order["index"] + 1
            inside = order["index"] >= start and (stop is None or order["index"] < stop)
            return inside and (wanted is None or ext in wanted)

        try:
            cur, seen, index = None, set(), -1
            for info, data in tar_members(url, want, state):
                offset = info.offset
                key, ext = _key(info.name)
                if "." not in info.name.rsplit("/", 1)[-1]:
                    raise ShardError(f"{url}: member {info.name!r} has no extension (at byte offset {offset})")
                if cur is None and entry.get("first_key") and key != entry["first_key"]:
                    raise ShardError(f"{url}: its first sample is {key!r}, the index says {entry['first_key']!r}: "
                                     f"the index belongs to another build of this folder (write the shards again)")
                if cur is None or key != cur["__key__"]:
                    if cur is not None:
                        _complete(cur, seen, url)
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
            _fail(e, on_error, skipped, 1, max((stop if stop is not None else (n_expected or count)) - max(count, start), 0))


def _diagnose(entry: dict) -> str:
    """Why a shard does not hold what the index says, as far as its size tells."""
    path = _local_path(entry["url"])
    if path is None or entry.get("bytes") is None:
        return "truncated, or not the shard the index lists"
    size = Path(path).stat().st_size
    if size < entry["bytes"]:
        return f"truncated: {size} bytes, the index says {entry['bytes']}"
    return (f"{size} bytes, the index says {entry['bytes']}: not the shard the index lists (an index of another "
            f"build? `bigearth-sr verify-shards` checks every shard)")


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
            if with_meta:
                meta.pop("crc32c", None)
                out["meta"] = meta
            yield out
        except SampleError as e:  # damage only: any other exception is a bug and surfaces
            _fail(ShardError(f"{s['__url__']}: sample {s['__key__']!r} at byte offset {s['__offset__']}: {e}"),
                  on_error, skipped, 0, 1)


def take_per_rank(src, n: int):
    """``n`` items from this rank in all, shared out between its DataLoader workers."""
    w, nw = _worker()
    mine = n // nw + (w < n % nw)
    for i, item in enumerate(src):
        if i >= mine:
            return
        yield item


def band_stats(index: dict, variant: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-band (mean, std) of the variant's cubes, from the build manifest via the index."""
    st = index["band_stats"]
    pick = lambda k, idx=slice(None): (np.asarray(st[k]["mean"], np.float32)[idx],  # noqa: E731
                                       np.maximum(np.asarray(st[k]["std"], np.float32)[idx], 1e-6))
    if variant == "super":
        return {"x": pick("data_super")}
    if variant == "rgb":
        return {"x": pick("data_super", RGB_INDEX)}
    return {"10m": pick("data_10m"), "20m": pick("data_20m"), "60m": pick("data_60m")}


def _norm(a: np.ndarray, stats) -> np.ndarray:
    mean, std = stats
    shape = (-1, 1, 1)
    return (a.astype(np.float32) - mean.reshape(shape)) * (1 / std).reshape(shape)


def to_tensors(item: dict, stats: dict | None) -> tuple:
    """``{"x", "y"[, "meta"]}`` (one sample or a batch) -> ``(x, y[, meta])`` torch tensors.

    x: float32 normalised when ``stats`` is given, else the stored uint16; y: float32 multi-hot.
    """
    x = item["x"]
    own = lambda a: a if a.flags.writeable and a.flags.c_contiguous else np.array(a)  # noqa: E731 (not a view of the tar bytes)
    if isinstance(x, dict):
        x = {k: torch.from_numpy(_norm(v, stats[k]) if stats else own(v)) for k, v in x.items()}
    else:
        x = torch.from_numpy(_norm(x, stats["x"]) if stats else own(x))
    y = torch.from_numpy(np.asarray(item["y"], np.float32))
    return (x, y, item["meta"]) if "meta" in item else (x, y)


def collate(samples: list[dict]) -> dict:
    x0 = samples[0]["x"]
    if isinstance(x0, dict):
        x = {k: np.stack([s["x"][k] for s in samples]) for k in x0}
    else:
        x = np.stack([s["x"] for s in samples])
    out = {"x": x, "y": np.stack([s["y"] for s in samples])}
    if "meta" in samples[0]:
        out["meta"] = [s["meta"] for s in samples]
    return out


# --------------------------------------------------------------------------- entry points

class ShardDataset(wds.DataPipeline):
    """The pipeline :func:`load` returns: an IterableDataset with the index and error counts."""

    index: dict
    skipped: Skipped
    rank: int
    world: int

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for this epoch (shard order and buffers); call before iterating, like
        ``DistributedSampler.set_epoch``. Reaches DataLoader workers unless they are persistent."""
        self._epoch.epoch = epoch

    def samples_this_rank(self) -> int:
        """Samples one pass gives this rank: ceil(split / world), the same on every rank (in
        resampled mode: the epoch length)."""
        if self._resampled:
            return self._epoch_samples
        lo, hi = rank_range(sum(e["samples"] for e in self._entries), self.rank, self.world)
        return hi - lo

    def batches_this_rank(self, batch_size: int, workers: int, partial: bool = True) -> int:
        """Batches one pass gives this rank when each of ``workers`` DataLoader workers batches
        its own part (the same on every rank, so data-parallel ranks take the same steps)."""
        n, w = self.samples_this_rank(), max(1, workers)
        sizes = [hi - lo for lo, hi in (worker_range(0, n, i, w) for i in range(w))]
        return sum(-(-k // batch_size) if partial else k // batch_size for k in sizes)


def load(source, split: str = "train", variant: str = "super", labels: int = 43, batch_size: int | None = None,
         shuffle: int = 1000, resampled: bool = False, epoch_samples: int | None = None, normalize: bool = True,
         with_meta: bool = False, on_error: str = "raise", verify: bool = True, seed: int = 0,
         rank: int | None = None, world: int | None = None, partial_batches: bool = True) -> ShardDataset:
    """A webdataset pipeline over one split of the shards.

    Args:
        source: the shard folder or its ``index.json``.
        split: ``train``, ``validation``, ``test`` (the splits the index lists).
        variant: ``super`` (12x120x120), ``rgb`` (B04, B03, B02 at 120x120) or ``native`` (a
            dict of the 10m, 20m and 60m cubes).
        labels: 43 (CORINE) or 19 (BigEarthNet-19).
        batch_size: batch this many samples (None: single samples).
        shuffle: buffer size in samples (0: files order; shard order is then kept too).
        resampled: draw shards with replacement forever; an epoch is ``epoch_samples`` per rank
            (default: the split's size / world). Without it, one epoch over all ranks and
            workers is every sample once (at most world - 1 repeats), the same count per rank.
        epoch_samples: the epoch length per rank in resampled mode.
        normalize: float32 (x - mean) / std per band from the build's statistics (fitted on
            the training split); else the uint16 values (normalise on the GPU with
            :class:`Normalizer`).
        with_meta: also yield each sample's ``meta.json`` (name, product, tile, date, x, y,
            crs, bounds, split).
        on_error: ``raise`` or ``skip`` (a damaged sample or shard is logged and counted in
            ``.skipped``; any other error is raised).
        verify: check each sample's CRC-32C.
        seed: shard order and shuffle buffers, reshuffled by :meth:`ShardDataset.set_epoch`.
        rank, world: this process's place (default: from torch.distributed, Horovod or the
            launcher's environment).
        partial_batches: keep each worker's last, smaller batch.

    Returns:
        A :class:`ShardDataset` (an ``IterableDataset``) yielding ``(x, y)`` (``(x, y, meta)``
        with ``with_meta``), batched when ``batch_size`` is set; it carries ``index``,
        ``skipped``, ``set_epoch``, ``samples_this_rank`` and ``batches_this_rank``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if labels not in (43, 19):
        raise ValueError(f"labels must be 43 or 19, got {labels!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    index, base = read_index(source)
    entries = shard_entries(index, base, split)
    r, w = rank_world()
    rank, world = (r if rank is None else rank), (w if world is None else world)
    epoch = _Epoch(seed, rank)
    skipped = Skipped()
    expected = {e["url"]: e["samples"] for e in entries}
    stats = band_stats(index, variant) if normalize else None
    wanted = {*VARIANTS[variant], "labels.json", "meta.json"}
    if resampled:
        stages = [wds.ResampledShards([e["url"] for e in entries], seed=seed, worker_seed=epoch.worker_seed,
                                      deterministic=True)]
    else:
        stages = [_Stage(epoch_slices, entries, rank, world, shuffle > 0, epoch)]
    stages.append(partial(tar_samples, expected=expected, wanted=wanted, on_error=on_error, skipped=skipped))
    if shuffle:
        stages.append(partial(_shuffled, bufsize=shuffle, epoch=epoch))
    stages.append(partial(decode_samples, variant=variant, labels=labels, verify=verify, with_meta=with_meta,
                          on_error=on_error, skipped=skipped))
    n_epoch = epoch_samples or math.ceil(index["splits"][split]["samples"] / world)
    if resampled:
        stages.append(partial(take_per_rank, n=n_epoch))
    if batch_size:
        stages.append(wds.batched(batch_size, collation_fn=collate, partial=partial_batches))
    stages.append(wds.map(partial(to_tensors, stats=stats)))
    ds = ShardDataset(*stages)
    ds.index, ds.skipped, ds.rank, ds.world = index, skipped, rank, world
    ds._epoch, ds._entries, ds._resampled, ds._epoch_samples = epoch, entries, resampled, n_epoch
    ds._shuffle_shards = shuffle > 0
    return ds


class _Stage(torch.utils.data.IterableDataset):
    """A source stage calling ``fn(*args)`` afresh on every iteration."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __iter__(self):
        return iter(self.fn(*self.args))


def _shuffled(src, bufsize: int, epoch: _Epoch):
    rng = random.Random(epoch.worker_seed())
    return wds.shuffle(bufsize, initial=min(bufsize, 100), rng=rng)(src)


def loader(source, split: str = "train", batch_size: int = 64, num_workers: int = 4, pin_memory: bool = True,
           prefetch_factor: int = 4, **kw) -> wds.WebLoader:
    """A DataLoader of batches from :func:`load`.

    Args:
        source, split: as :func:`load`.
        batch_size: samples per batch, made in the workers.
        num_workers: DataLoader worker processes; each reads its own part of this rank's share.
        pin_memory: pin batches for asynchronous copies to the GPU (ignored without one).
        prefetch_factor: batches each worker prepares ahead.
        **kw: passed to :func:`load` (variant, labels, shuffle, normalize, rank, world, ...).

    Returns:
        A ``webdataset.WebLoader``; the pipeline is ``loader.dataset`` (its ``set_epoch``,
        ``index``, ``skipped``, ``batches_this_rank``).
    """
    ds = load(source, split, batch_size=batch_size, **kw)
    dl = wds.WebLoader(ds, batch_size=None, num_workers=num_workers, pin_memory=pin_memory and torch.cuda.is_available(),
                       prefetch_factor=prefetch_factor if num_workers else None, persistent_workers=False)
    dl.dataset = ds
    return dl


class Normalizer(torch.nn.Module):
    """Per-band normalisation as a module, for uint16 batches moved to the GPU as they are
    (half the bytes of float32 over PCIe)."""

    def __init__(self, index: dict, variant: str = "super"):
        super().__init__()
        for k, (mean, std) in band_stats(index, variant).items():
            self.register_buffer(f"mean_{k}", torch.from_numpy(mean).view(-1, 1, 1))
            self.register_buffer(f"inv_std_{k}", torch.from_numpy(1 / std).view(-1, 1, 1))

    def forward(self, x):
        if isinstance(x, dict):
            return {k: (v.float() - getattr(self, f"mean_{k}")) * getattr(self, f"inv_std_{k}") for k, v in x.items()}
        return (x.float() - self.mean_x) * self.inv_std_x
