"""Which samples each rank and DataLoader worker reads in an epoch: every sample of the split
once over all of them (at most world - 1 repeats, as ``DistributedSampler`` pads), the same
count on every rank, without replacement, whatever the shard sizes; or, in resampled mode,
``n`` draws per rank shared out between the workers."""
from __future__ import annotations

import random

import torch
from webdataset.utils import make_seed


def worker_info() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class Epoch:
    """Seeds that differ per epoch, rank and worker, and that ``set_epoch`` reaches in workers."""

    def __init__(self, seed: int, rank: int):
        self.seed, self.rank, self.epoch = seed, rank, 0

    def worker_seed(self) -> int:
        return make_seed(self.seed, self.rank, worker_info()[0], self.epoch)


def epoch_order(entries: list[dict], shuffle: bool, epoch: Epoch) -> list[dict]:
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


def epoch_slices(entries: list[dict], rank: int, world: int, shuffle: bool, epoch: Epoch):
    """What this rank's DataLoader worker reads in this epoch: every sample of the split once over
    all ranks and workers (plus at most world - 1 repeats), without replacement, the same count
    on every rank, each worker reading only its own slices of the shards."""
    order = epoch_order(entries, shuffle, epoch)
    lo, hi = rank_range(sum(e["samples"] for e in order), rank, world)
    yield from slices(order, *worker_range(lo, hi, *worker_info()))


def take_per_rank(src, n: int):
    """``n`` items from this rank in all, shared out between its DataLoader workers."""
    w, nw = worker_info()
    mine = n // nw + (w < n % nw)
    for i, item in enumerate(src):
        if i >= mine:
            return
        yield item
