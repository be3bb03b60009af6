"""The epoch partition on its own (shards/partition.py): positions, slices and shares."""
import itertools

import pytest

from shards.partition import rank_range, slices, worker_range


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
