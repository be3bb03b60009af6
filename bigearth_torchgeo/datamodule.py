"""The three splits of a build as a torchgeo ``NonGeoDataModule``: batches normalised on the
device by the archive's training statistics, as torchgeo's own data modules normalise theirs, so
torchgeo's ``ClassificationTask`` and a Lightning ``Trainer`` take it unchanged."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchgeo.datamodules import NonGeoDataModule

from .dataset import BigEarthSR, training_stats


class BigEarthSRDataModule(NonGeoDataModule):
    """Train, val and test of a bigearth-sr build.

    Args:
        root: the folder a build wrote, or its ``bigearth_sr.h5``.
        batch_size: samples per batch (every split).
        num_workers: DataLoader worker processes.
        **kwargs: passed to :class:`BigEarthSR` (``bands``, ``num_classes``, ``transforms``).

    ``mean`` and ``std`` are the per-band statistics the build fitted on its training split.
    """

    def __init__(self, root: str | Path = "data", batch_size: int = 64, num_workers: int = 0, **kwargs: Any) -> None:
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if int(num_workers) != num_workers or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        mean, std = training_stats(root, kwargs.get("bands", "super"))
        # read by torchgeo's BaseDataModule.__init__ into its normalising augmentation
        self.mean, self.std = torch.from_numpy(mean), torch.from_numpy(std)
        super().__init__(BigEarthSR, batch_size, num_workers, root=root, **kwargs)
