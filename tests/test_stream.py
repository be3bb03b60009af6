"""shards/stream.py: epochs, reshuffling and resampled streams."""
from __future__ import annotations

import shards


def test_epochs_reshuffle_and_resampled_epoch_length(written):
    _, _, sdir, index = written
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    n = index["splits"][split]["samples"]
    ds = shards.load(sdir, split, with_meta=True, normalize=False, shuffle=20)
    order = lambda: [m["name"] for _, _, m in ds]  # noqa: E731
    a, b = order(), order()
    assert a == b  # same epoch, same order
    ds.set_epoch(1)
    c = order()
    assert sorted(c) == sorted(a) and c != a
    for world in (1, 2):
        for workers in (0, 2):
            dl = shards.loader(sdir, split, batch_size=3, num_workers=workers, resampled=True, rank=0, world=world)
            sizes = [len(x) for x, _ in dl]
            assert sum(sizes) == -(-n // world) == dl.dataset.samples_this_rank()
