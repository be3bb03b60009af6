"""shards/normalize.py: normalisation from the archive's training statistics."""
from __future__ import annotations

import h5py
import numpy as np
import torch

import shards


def test_normalisation_uses_the_archive_statistics(written):
    path, _, sdir, index = written
    with h5py.File(path) as f:
        cube = f["data_super"][:].astype(np.float64)
        names = f["name"].asstr()[:].tolist()
        train = f["split"].asstr()[:] == "train"
    # independent of the manifest: the training patches' statistics
    mean, std = cube[train].mean(axis=(0, 2, 3)), cube[train].std(axis=(0, 2, 3))
    split = next(iter(index["splits"]))
    raw = {}
    for x, y, meta in shards.load(sdir, split, shuffle=0, normalize=False, with_meta=True):
        raw[meta["name"]] = x
    for x, y, meta in shards.load(sdir, split, shuffle=0, with_meta=True, batch_size=3):
        assert x.dtype == torch.float32 and x.shape[1:] == (12, 120, 120) and y.shape[1:] == (43,)
        for xi, m in zip(x, meta):
            expect = (cube[names.index(m["name"])] - mean[:, None, None]) / std[:, None, None]
            np.testing.assert_allclose(xi.numpy(), expect, rtol=1e-4, atol=1e-3)
            gpu_style = shards.Normalizer(index)(raw[m["name"]][None])[0]
            torch.testing.assert_close(gpu_style, xi, rtol=1e-5, atol=1e-5)
