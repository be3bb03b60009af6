"""shards/partition.py: the epoch partition on its own (positions, slices, shares), then through
the reader over ranks and workers."""
import itertools

import pytest

import shards
from shards.partition import rank_range, slices, worker_range

from .conftest import SHARD_BYTES, keys_of


@pytest.mark.parametrize("counts", [[5], [3, 3, 1], [2, 2, 2, 2, 2, 1], [1, 4, 0, 2]])
def test_slices_cover_every_position_once_for_every_world_and_worker_count(counts):
    order = [{"url": f"s{i}", "samples": c} for i, c in enumerate(counts)]
    n = sum(counts)
    ids = [(e["url"], j) for e in order for j in range(e["samples"])]  # the epoch's sequence
    for world, workers in itertools.product(range(1, 6), range(1, 4)):
        seen = []
        for rank in range(world):
            lo, hi = rank_range(n, rank, world)
            assert hi - lo == -(-n // world)  # the same share on every rank
            for w in range(workers):
                for s in slices(order, *worker_range(lo, hi, w, workers)):
                    assert 0 <= s["start"] < s["stop"] <= s["samples"]
                    seen += [(s["url"], j) for j in range(s["start"], s["stop"])]
        assert len(seen) == world * -(-n // world)
        assert set(seen) == set(ids)  # every sample, and only padding repeats:
        assert seen[:n] == ids and seen[n:] == ids[:len(seen) - n]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_an_epoch_over_ranks_and_workers_is_the_split_once_with_equal_shares(written, world, tmp_path):
    """Without replacement: for every world and worker count, the keys of one epoch over all
    ranks are the split, each once, plus at most world - 1 repeats (padding), and every rank
    gets the same number of samples and batches (the shards hold unequal counts)."""
    sdir = tmp_path / "three"
    index = shards.write_shards(written[0], sdir, int(SHARD_BYTES * 1.5), progress=False)  # three per shard
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    counts = [e["samples"] for e in index["splits"][split]["shards"]]
    assert len(set(counts)) > 1  # the last shard is smaller: the case that needed replacement before
    n = index["splits"][split]["samples"]
    for workers in (1, 2, 3):
        per_rank = [keys_of(sdir, split, r, world, workers, shuffle=50, seed=3) for r in range(world)]
        flat = [k for ks in per_rank for k in ks]
        assert set(flat) == set(keys_of(sdir, split, 0, 1, 0, shuffle=0))
        assert len(flat) - n == (-n) % world <= world - 1  # the repeats: padding only
        assert {len(ks) for ks in per_rank} == {-(-n // world)}
        ds = shards.load(sdir, split, rank=0, world=world)
        assert ds.samples_this_rank() == len(per_rank[0])
        for r in range(world):
            dl = shards.loader(sdir, split, batch_size=4, num_workers=workers, rank=r, world=world, shuffle=0)
            assert len(list(dl)) == dl.dataset.batches_this_rank(4, workers)


@pytest.mark.parametrize("env", [{"RANK": "1", "WORLD_SIZE": "3"}, {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "3"},
                                 {"SLURM_PROCID": "1", "SLURM_NTASKS": "3"}, {"HOROVOD_RANK": "1", "HOROVOD_SIZE": "3"}])
def test_rank_and_world_come_from_the_launcher(written, monkeypatch, env):
    from bigearth.distinfo import _ENV, rank_world
    for r, w in _ENV:
        monkeypatch.delenv(r, raising=False)
        monkeypatch.delenv(w, raising=False)
    assert rank_world() == (0, 1)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert rank_world() == (1, 3)
    _, _, sdir, index = written
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    ds = shards.load(sdir, split, with_meta=True, shuffle=0)
    assert (ds.rank, ds.world) == (1, 3)
    assert sorted(m["name"] for _, _, m in ds) == sorted(keys_of(sdir, split, 1, 3, 0, shuffle=0))
