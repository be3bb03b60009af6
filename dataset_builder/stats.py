"""Per-band statistics of the patch cubes: exact running sums per split, combinable across
tiles, workers and ranks, summarised as mean and standard deviation.

The normalisation a model uses comes from the **training** split only (statistics of the test
patches must not shape the model); the per-split figures are kept beside it in the manifest.
Used by the builder (products and the BigEarthNet v1 ingest) and the shard writer.
"""
from __future__ import annotations

import numpy as np

from .archive import ARRAY_KEYS, BAND_ATTRS

FIT_SPLIT = "train"  # the split the normalisation is fitted on


class BandStats:
    """Running per-band n, sum and sum of squares of one set of patches, as Python integers:
    no float drift however many tiles are combined."""

    def __init__(self, sums: dict | None = None):
        self.sums = {k: [[0] * len(BAND_ATTRS[k][0]) for _ in range(3)] for k in ARRAY_KEYS}
        if sums is not None:
            self.merge(sums)

    def add(self, arrays: dict) -> None:
        """Add patches: ``arrays[key]`` of shape (n, bands, h, w), uint16."""
        for k in ARRAY_KEYS:
            a = arrays[k]
            flat = a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1)
            wide = flat.astype(np.uint32)
            s, q = flat.sum(axis=1, dtype=np.uint64), np.einsum("ij,ij->i", wide, wide, dtype=np.uint64)
            acc = self.sums[k]
            for c in range(a.shape[1]):
                acc[0][c] += flat.shape[1]
                acc[1][c] += int(s[c])
                acc[2][c] += int(q[c])

    def merge(self, sums: dict) -> None:
        """Add another set's sums (``BandStats.sums`` or its JSON form)."""
        for k, acc in self.sums.items():
            for row, add in zip(acc, sums[k]):
                for c, v in enumerate(add):
                    row[c] += int(v)

    @property
    def empty(self) -> bool:
        return not any(self.sums[ARRAY_KEYS[0]][0])

    def summary(self) -> dict:
        """{cube: {bands, mean, std}} (population std)."""
        out = {}
        for key, (bands, _) in BAND_ATTRS.items():
            n_, s_, q_ = self.sums[key]
            n = np.maximum(np.array(n_, np.float64), 1)
            mean = np.array(s_, np.float64) / n
            # var = (n*sumsq - sum^2) / n^2, in Python integers
            var = np.array([(ni * q - s * s) / max(ni, 1) ** 2 for ni, s, q in zip(n_, s_, q_)], np.float64)
            out[key] = {"bands": list(bands), "mean": mean.round(4).tolist(),
                        "std": np.sqrt(np.maximum(var, 0)).round(4).tolist()}
        return out


class SplitStats:
    """One :class:`BandStats` per split."""

    def __init__(self):
        self.by_split: dict[str, BandStats] = {}

    def add(self, arrays: dict, splits) -> None:
        """Add patches whose splits are ``splits`` (one per patch)."""
        splits = np.asarray(splits)
        for s in np.unique(splits):
            rows = np.flatnonzero(splits == s)
            self.by_split.setdefault(str(s), BandStats()).add({k: arrays[k][rows] for k in ARRAY_KEYS})

    def merge(self, doc: dict) -> None:
        """Add another's JSON form ({split: sums})."""
        for s, sums in doc.items():
            self.by_split.setdefault(s, BandStats()).merge(sums)

    def to_json(self) -> dict:
        return {s: st.sums for s, st in sorted(self.by_split.items())}

    def per_split(self) -> dict:
        return {s: st.summary() for s, st in sorted(self.by_split.items())}

    def normalisation(self) -> dict:
        """The statistics to normalise with: of the training split; when there is none (an
        archive without splits), of all patches, and the result says so (``fitted_on``)."""
        if FIT_SPLIT in self.by_split and not self.by_split[FIT_SPLIT].empty:
            return {**self.by_split[FIT_SPLIT].summary(), "fitted_on": FIT_SPLIT}
        pooled = BandStats()
        for st in self.by_split.values():
            pooled.merge(st.sums)
        return {**pooled.summary(), "fitted_on": "all splits (no training split)"}


def of_archive(f, read=None) -> SplitStats:
    """Statistics of an open archive, read in blocks of rows (``read(f, key, sel)`` reads a block;
    default plain h5py)."""
    read = read or (lambda f, key, sel: f[key][sel])
    stats = SplitStats()
    n = f["name"].shape[0]
    split = f["split"].asstr()[:]
    for start in range(0, n, 256):
        sel = slice(start, start + 256)
        stats.add({k: read(f, k, sel) for k in ARRAY_KEYS}, split[sel])
    return stats
