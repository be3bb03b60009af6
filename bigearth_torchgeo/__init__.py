"""bigearth-sr for torchgeo users: a build's archive as a torchgeo dataset (:class:`BigEarthSR`) and
data module (:class:`BigEarthSRDataModule`). The ``torchgeo`` extra: ``python -m pip install -e
'.[torchgeo]'`` in the clone (the package is installed from its source, not from a registry)."""
from __future__ import annotations

try:
    import torchgeo  # noqa: F401
except ImportError as e:  # one line saying what to install, not torchgeo's import chain
    raise ImportError("bigearth_torchgeo needs torchgeo: in the clone, python -m pip install -e '.[torchgeo]' "
                      "into the environment that runs this (or python -m pip install 'torchgeo>=0.7,<0.9')") from e

from .datamodule import BigEarthSRDataModule
from .dataset import BigEarthSR, training_stats

__all__ = ["BigEarthSR", "BigEarthSRDataModule", "training_stats"]
