"""A build's archive as a torchgeo ``NonGeoDataset``: map-style, samples as torchgeo's own
BigEarthNet gives them (``{"image": float32 tensor, "label": long multi-hot}``), ``transforms=``
applied to the sample dict, ``plot()`` returning a matplotlib Figure.

Over the HDF5 archive, not the shards: a map-style dataset needs random access, which the archive
has (one patch per chunk) and a tar stream has not. Every sample is checked as it is read, as the
other readers check it: the archive's names, splits, labels and attributes against its digests
when opened, each patch's pixels against its row of ``pixel_digests`` when read.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import torch
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from bigearth import nomenclature as nom
from bigearth.errors import InputError
from bigearth.pictures import rgb_image
from bigearth.record import BANDS_SUPER, RGB, RGB_INDEX
from dataset_builder import archive
from dataset_builder.build import ARCHIVE_NAME

# bands= -> the rows of data_super the image holds
BANDS = {"super": list(range(len(BANDS_SUPER))), "rgb": list(RGB_INDEX)}
BAND_NAMES = {"super": BANDS_SUPER, "rgb": RGB}
LABELS = {43: ("classes", nom.CLASS_NAMES), 19: ("classes_19", nom.CLASS_NAMES_19)}
# torchgeo's split names, and ours
SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def archive_path(root) -> Path:
    """The archive a build wrote: ``root`` itself, or ``root/bigearth_sr.h5``."""
    root = Path(root)
    path = root / ARCHIVE_NAME if root.is_dir() else root
    if not path.is_file():
        raise InputError(root, f"no {ARCHIVE_NAME} here: give root= the folder a bigearth-sr build wrote "
                               f"(its --out), or the archive itself")
    return path


def training_stats(root, bands: str = "super") -> tuple[np.ndarray, np.ndarray]:
    """Per-band (mean, std) of the image's bands, fitted on the archive's training split (the
    statistics the build recorded under the archive's digests; computed here for an archive built
    before it kept them)."""
    _check_bands(bands)
    path = archive_path(root)
    archive.check(path)  # every reader's check (memoised: the data module's splits pay it once)
    with archive.reading(path) as f:
        own = f.attrs.get("band_stats")
        if own is not None:
            stats = json.loads(own)
        else:
            from dataset_builder.stats import of_archive
            stats = of_archive(f, lambda f, key, sel: archive.read_dataset(f, key, sel, path)).normalisation()
    st = stats["data_super"]
    rows = BANDS[bands]
    mean = np.asarray(st["mean"], np.float32)[rows]
    std = np.maximum(np.asarray(st["std"], np.float32)[rows], 1e-6)
    return mean, std


def _check_bands(bands: str) -> None:
    if bands not in BANDS:
        raise ValueError(f"bands must be one of {sorted(BANDS)}, got {bands!r}")


class BigEarthSR(NonGeoDataset):
    """The patches of one split of a bigearth-sr build.

    Args:
        root: the folder a build wrote (``bigearth-sr build --out``), or its ``bigearth_sr.h5``.
        split: ``train``, ``val`` (or ``validation``) or ``test``.
        bands: ``super`` (all 12 bands at 10 m, ``data_super``, spectral order) or ``rgb``
            (B04, B03, B02 of it).
        num_classes: 43 (CORINE, as BigEarthNet v1) or 19 (the 19-class nomenclature).
        transforms: a function of the sample dict returning a sample dict (torchgeo's convention).

    Samples: ``image`` float32 (12 or 3, 120, 120), surface reflectance × 10000 as stored (the
    data module normalises batches); ``label`` int64 multi-hot (``num_classes``).
    """

    splits = ("train", "val", "test")
    classes = nom.CLASS_NAMES

    def __init__(self, root: str | Path = "data", split: str = "train", bands: str = "super", num_classes: int = 43,
                 transforms: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {self.splits} (or 'validation'), got {split!r}")
        _check_bands(bands)
        if num_classes not in LABELS:
            raise ValueError(f"num_classes must be 43 or 19, got {num_classes!r}")
        self.root, self.split, self.bands, self.num_classes = root, split, bands, num_classes
        self.transforms = transforms
        self.path = archive_path(root)
        label_key, self.classes = LABELS[num_classes]
        self.band_names = BAND_NAMES[bands]
        # every reader's check: the manifest beside it, names, splits, labels and attributes as the build
        # wrote them (what shards, info --verify or tfds build refuse, this refuses in the same line)
        archive.check(self.path)
        with archive.reading(self.path) as f:
            split_of = f["split"].asstr()[:]
            self.rows = np.flatnonzero(split_of == SPLITS[split])
            self.names = [str(n) for n in f["name"].asstr()[:][self.rows]]
            self.labels = np.asarray(f[label_key][:][self.rows], np.int64)
            digests = archive.stored_pixel_digests(f)
            self.digests = None if digests is None else digests[self.rows]
        self._file: h5py.File | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} patches of split {self.split!r}")
        index = index % len(self)
        cube = archive.read_dataset(self._open(), "data_super", int(self.rows[index]), self.path)
        archive.check_pixels(self.path, self.names[index], None if self.digests is None else self.digests[index],
                             {"data_super": cube})
        sample = {"image": torch.from_numpy(cube[BANDS[self.bands]].astype(np.float32)),
                  "label": torch.from_numpy(self.labels[index])}
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _open(self) -> h5py.File:
        # one handle per process: an h5py handle does not survive fork into DataLoader workers
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, -1
        return state

    def label_names(self, multi_hot) -> list[str]:
        """The class names of a multi-hot vector (a tensor or an array)."""
        hot = np.asarray(multi_hot).astype(bool)
        return [c for c, on in zip(self.classes, hot) if on]

    def plot(self, sample: dict[str, Tensor], show_titles: bool = True, suptitle: str | None = None):
        """The patch as RGB (B04, B03, B02, stretched between its 2nd and 98th percentiles) with its
        label names, and the prediction's when the sample holds one (``prediction``, multi-hot).
        Returns a matplotlib Figure."""
        import matplotlib.pyplot as plt

        image = sample["image"]
        image = image.numpy() if isinstance(image, Tensor) else np.asarray(image)
        rgb = image[[BANDS[self.bands].index(i) for i in RGB_INDEX]] if self.bands == "super" else image
        # the names beside the image, one a line: BigEarthNet's are long and a patch has up to 12
        fig, (ax, text) = plt.subplots(1, 2, figsize=(9, 4.2), width_ratios=(1, 1.15), layout="constrained")
        ax.imshow(rgb_image(rgb))
        ax.axis("off")
        text.axis("off")
        if show_titles:
            lines = ["Labels:", *(f"  {c}" for c in self.label_names(sample["label"]) or ["none"])]
            if "prediction" in sample:
                lines += ["", "Predictions:", *(f"  {c}" for c in self.label_names(sample["prediction"]) or ["none"])]
            text.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=8, transform=text.transAxes)
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig
