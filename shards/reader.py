"""Streaming the shards into PyTorch, as a webdataset pipeline of small stages.

shards of the split -> this rank's share (or resampled draws) -> this DataLoader worker's share
-> tar members grouped into samples (errors name the shard and byte offset) -> shuffle buffer
-> checked and decoded to the chosen variant -> per-band normalisation -> batches of tensors.

In the default mode N ranks x M workers read every sample of the split once per epoch (at
most N - 1 repeats), the same count per rank, each worker its own slices of the shards
(``partition.py``). In resampled mode every worker draws shards at random forever and an
epoch is a sample count taken from the index. The stages live in ``index.py``, ``tar.py``,
``partition.py``, ``stream.py`` and ``normalize.py``; this module assembles them.
"""
from __future__ import annotations

import math
import numbers
import random
import sys
from functools import partial

import torch
import webdataset as wds

from bigearth.distinfo import capped, rank_world, usable_cores
from bigearth.record import canonical_split
from bigearth.stopping import ignore_in_worker

from .stream import VARIANTS, Skipped, decode_samples, tar_samples
from .index import INDEX_NAME, names_shards, read_index, shard_entries
from .normalize import band_stats, collate, to_tensors
from .partition import Epoch, epoch_slices, rank_range, take_per_rank, worker_range


class ShardDataset(wds.DataPipeline):
    """The pipeline :func:`load` returns: an IterableDataset with the index and error counts."""

    def __init__(self, stages: list, index: dict, entries: list[dict], skipped: Skipped, epoch: Epoch, rank: int,
                 world: int, resampled: bool, epoch_samples: int):
        super().__init__(*stages)
        self.index, self.skipped, self.rank, self.world = index, skipped, rank, world
        self._epoch, self._entries, self._resampled, self._epoch_samples = epoch, entries, resampled, epoch_samples
        self.rebatched = False  # set by loader(): the workers' batches are joined into full ones

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

    def __len__(self) -> int:
        """Samples one pass gives this rank (``samples_this_rank``), from the index: what a
        scheduler or a progress bar asks ``len`` for."""
        return self.samples_this_rank()

    def batches_this_rank(self, batch_size: int, workers: int, partial: bool = True) -> int:
        """Batches one pass gives this rank (the same on every rank, so data-parallel ranks take
        the same steps): through :func:`loader`, ``batch_size`` samples each whatever the workers,
        the last one smaller (with ``partial``); iterating :func:`load` in ``workers`` DataLoader
        workers directly, each worker batches its own part."""
        if self.rebatched:
            n = self.samples_this_rank()
            return -(-n // batch_size) if partial else n // batch_size
        n, w = self.samples_this_rank(), max(1, workers)
        sizes = [hi - lo for lo, hi in (worker_range(0, n, i, w) for i in range(w))]
        return sum(-(-k // batch_size) if partial else k // batch_size for k in sizes)


def load(source, split: str = "train", variant: str = "super", labels: int = 43, batch_size: int | None = None,
         shuffle: int = 1000, resampled: bool = False, epoch_samples: int | None = None, normalize: bool = True,
         with_meta: bool = False, on_error: str = "raise", verify: bool = True, seed: int = 0,
         rank: int | None = None, world: int | None = None, partial_batches: bool = True,
         layout: str = "chw") -> ShardDataset:
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
            ``.skipped``; any other error is raised). A shard file that is not the one the index
            lists (each sample names its shard's fingerprint) counts as damaged, from its first
            sample on.
        verify: check each sample's CRC-32C.
        seed: shard order and shuffle buffers, reshuffled by :meth:`ShardDataset.set_epoch`.
        rank, world: this process's place (default: from torch.distributed, Horovod or the
            launcher's environment).
        partial_batches: keep each worker's last, smaller batch.
        layout: ``chw`` (bands first, as stored: what torchvision's models take) or ``hwc``
            (channels last, as TFDS ``bigearthnet`` and Keras have it).

    Returns:
        A :class:`ShardDataset` (an ``IterableDataset``) yielding ``(x, y)`` (``(x, y, meta)``
        with ``with_meta``), batched when ``batch_size`` is set; it carries ``index``,
        ``skipped``, ``set_epoch``, ``samples_this_rank`` and ``batches_this_rank``.
    """
    _count("batch_size", batch_size, 1, none_ok=True)
    _count("shuffle", shuffle, 0)
    _count("epoch_samples", epoch_samples, 1, none_ok=True)
    if world is not None:
        _count("world", world, 1)
    if rank is not None:
        _count("rank", rank, 0)
        size = world if world is not None else rank_world()[1]
        if rank >= size:
            raise ValueError(f"rank must be in [0, world) = [0, {size}), got {rank!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if layout not in ("chw", "hwc"):
        raise ValueError(f"layout must be 'chw' (bands first) or 'hwc' (channels last), got {layout!r}")
    split = canonical_split(split, note=lambda t: print(t, file=sys.stderr, flush=True))
    if labels not in (43, 19):
        raise ValueError(f"labels must be 43 or 19, got {labels!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    index, base = read_index(source)
    entries = shard_entries(index, base, split)
    if not names_shards(index):
        print(f"note: {base / INDEX_NAME}: shards of format {index.get('format_version')!r} (before 4) do not name "
              f"their shard in each sample, so a shard replaced by another build's is found only by `bigearth-sr "
              f"verify-shards`; `bigearth-sr shards` writes them again", file=sys.stderr, flush=True)
    r, w = rank_world()
    rank, world = (r if rank is None else rank), (w if world is None else world)
    epoch = Epoch(seed, rank)
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
    if layout == "hwc":
        stages.append(wds.map(channels_last))
    return ShardDataset(stages, index, entries, skipped, epoch, rank, world, resampled, n_epoch)


def channels_last(item: tuple) -> tuple:
    """(x, y[, meta]) with x (or each cube of the native variant) bands last: (..., H, W, C)."""
    def move(t):
        return t.movedim(-3, -1).contiguous()
    x = item[0]
    return ({k: move(v) for k, v in x.items()} if isinstance(x, dict) else move(x), *item[1:])


class _Stage(torch.utils.data.IterableDataset):
    """A source stage calling ``fn(*args)`` afresh on every iteration."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __iter__(self):
        return iter(self.fn(*self.args))


def _shuffled(src, bufsize: int, epoch: Epoch):
    rng = random.Random(epoch.worker_seed())
    return wds.shuffle(bufsize, initial=min(bufsize, 100), rng=rng)(src)


def loader(source, split: str = "train", batch_size: int = 64, num_workers: int = 4, pin_memory: bool = True,
           prefetch_factor: int = 4, partial_batches: bool = True, **kw) -> wds.WebLoader:
    """A DataLoader of batches from :func:`load`: every batch ``batch_size`` samples, whatever the
    number of workers, the last one of an epoch smaller unless ``partial_batches=False``.

    Args:
        source, split: as :func:`load` (``split="val"`` is read as ``validation``, with a note).
        batch_size: samples per batch. Each worker batches its own part; the main process joins
            the workers' batches into full ones (one process reading: they are full already).
        num_workers: DataLoader worker processes, each reading its own part of this rank's
            share; capped at the usable cores, with a note (0: read in this process).
        pin_memory: pin batches for asynchronous copies to the GPU (ignored without one).
        prefetch_factor: batches each worker prepares ahead.
        partial_batches: keep the last, smaller batch of an epoch (False: drop it).
        **kw: passed to :func:`load`: ``variant``, ``labels``, ``shuffle``, ``resampled``,
            ``epoch_samples``, ``normalize``, ``with_meta``, ``on_error``, ``verify``, ``seed``,
            ``rank``, ``world``, ``layout``.

    Returns:
        A ``webdataset.WebLoader`` whose ``len`` is the batches one pass gives this rank; the
        pipeline is ``loader.dataset`` (its ``set_epoch``, ``index``, ``skipped``,
        ``batches_this_rank``, and ``len``: the samples one pass gives this rank).
    """
    _count("batch_size", batch_size, 1)  # before any worker starts: a bad one would hang or fail in a worker
    _count("num_workers", num_workers, 0)
    _count("prefetch_factor", prefetch_factor, 1)
    num_workers = capped("num_workers", num_workers, {f"{usable_cores()} usable cores": usable_cores()}) \
        if num_workers else 0
    ds = load(source, split, batch_size=batch_size, partial_batches=partial_batches or num_workers > 1, **kw)
    dl = wds.WebLoader(ds, batch_size=None, num_workers=num_workers, pin_memory=pin_memory and torch.cuda.is_available(),
                       prefetch_factor=prefetch_factor if num_workers else None, persistent_workers=False,
                       # a cluster signals the whole job: a worker dead of it would read as a crash before
                       # the main process stops cleanly (bigearth.stopping)
                       worker_init_fn=ignore_in_worker if num_workers else None)
    if num_workers > 1:  # each worker's last batch is short: join them so the user gets batch_size
        dl = dl.compose(partial(rebatch, batch_size=batch_size, partial=partial_batches))
    ds.rebatched = True
    # len(): the batches of one pass on this rank, exact under the partition rules
    dl = dl.with_length(ds.batches_this_rank(batch_size, num_workers, partial_batches), silent=True)
    dl.dataset = ds
    return dl


def _count(name: str, value, least: int, none_ok: bool = False) -> None:
    """``value`` is an integer >= ``least`` (or None where allowed), else a ValueError naming the
    argument and its valid range, raised in the caller."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}{' (or None)' if none_ok else ''}, got {value!r}")


def rebatch(src, batch_size: int, partial: bool = True):
    """Batches of ``batch_size`` from batches of any size (tuples of tensors, dicts of them for the
    native variant, lists for the metadata), in order; the remainder last, if ``partial``."""
    held, n = [], 0
    for b in src:
        b = tuple(b) if isinstance(b, list) else b  # the DataLoader may hand a tuple over as a list
        held.append(b)
        n += _length(b)
        while n >= batch_size:
            joined = _join(held) if len(held) > 1 else held[0]
            yield _slice(joined, 0, batch_size)
            n -= batch_size
            held = [_slice(joined, batch_size, batch_size + n)] if n else []
    if held and partial:
        yield _join(held) if len(held) > 1 else held[0]


def _length(b) -> int:
    first = b[0] if isinstance(b, (tuple, list)) else b
    if isinstance(first, dict):
        first = next(iter(first.values()))
    return len(first)


def _join(parts: list):
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, dict):
        return {k: _join([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple):
        return tuple(_join([p[i] for p in parts]) for i in range(len(first)))
    return [x for p in parts for x in p]  # a list: the samples' metadata


def _slice(b, lo: int, hi: int):
    if isinstance(b, dict):
        return {k: _slice(v, lo, hi) for k, v in b.items()}
    if isinstance(b, tuple):
        return tuple(_slice(v, lo, hi) for v in b)
    return b[lo:hi]
