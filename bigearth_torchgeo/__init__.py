"""bigearth-sr for torchgeo users (``pip install 'bigearth-sr[torchgeo]'``): a build's archive as
a torchgeo dataset (:class:`BigEarthSR`) and data module (:class:`BigEarthSRDataModule`)."""
from __future__ import annotations

try:
    import torchgeo  # noqa: F401
except ImportError as e:  # one line saying what to install, not torchgeo's import chain
    raise ImportError("bigearth_torchgeo needs torchgeo: pip install 'bigearth-sr[torchgeo]' "
                      "(or pip install 'torchgeo>=0.7,<0.9')") from e

from .datamodule import BigEarthSRDataModule
from .dataset import BigEarthSR, training_stats

__all__ = ["BigEarthSR", "BigEarthSRDataModule", "training_stats"]
