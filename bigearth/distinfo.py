"""Rank and world size of this process, whichever launcher or engine started it.

The shard reader needs them to give each rank its own shards, before the training engine may
even be set up; the trainer asks the same function, so both always agree.
"""
from __future__ import annotations

import os
import sys

# (rank, world) variables set by the launchers people use: torchrun, horovodrun, mpirun
# (Open MPI, MPICH/Hydra, PMIx) and srun.
_ENV = (("RANK", "WORLD_SIZE"), ("HOROVOD_RANK", "HOROVOD_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"), ("PMIX_RANK", "PMIX_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


def rank_world() -> tuple[int, int]:
    """(rank, world size): from an initialised torch.distributed group, else an initialised
    Horovod, else the launcher's environment, else (0, 1)."""
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    hvd = sys.modules.get("horovod.torch")
    if hvd is not None:
        try:
            if hvd.is_initialized():
                return hvd.rank(), hvd.size()
        except (AttributeError, ValueError):
            pass
    for r, w in _ENV:
        if r in os.environ and w in os.environ:
            return int(os.environ[r]), int(os.environ[w])
    return 0, 1
