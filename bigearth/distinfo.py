"""Rank and world size of this process (and its share of the node's cores), whichever launcher
or engine started it.

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


def _horovod():
    """horovod.torch when this process imported and initialised it, else None."""
    hvd = sys.modules.get("horovod.torch")
    try:
        return hvd if hvd is not None and hvd.is_initialized() else None
    except (AttributeError, ValueError):
        return None


def _from_env(pairs) -> tuple[int, int] | None:
    """The first (index, size) pair of variables the environment sets."""
    for i, n in pairs:
        if i in os.environ and n in os.environ:
            return int(os.environ[i]), int(os.environ[n])
    return None


def rank_world() -> tuple[int, int]:
    """(rank, world size): from an initialised torch.distributed group, else an initialised
    Horovod, else the launcher's environment, else (0, 1)."""
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    hvd = _horovod()
    if hvd is not None:
        return hvd.rank(), hvd.size()
    found = _from_env(_ENV)
    if found is not None:
        return found
    return 0, 1


# (local rank, local size) variables: the ranks sharing this node, by launcher. Horovod's gloo
# launcher sets HOROVOD_LOCAL_*, torchrun LOCAL_*, Open MPI OMPI_COMM_WORLD_LOCAL_*, MPICH's
# Hydra MPI_LOCALRANKID/MPI_LOCALNRANKS, srun SLURM_LOCALID and SLURM_TASKS_PER_NODE.
_LOCAL_ENV = (("HOROVOD_LOCAL_RANK", "HOROVOD_LOCAL_SIZE"), ("LOCAL_RANK", "LOCAL_WORLD_SIZE"),
              ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"), ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"))


def local_world() -> tuple[int, int]:
    """(local rank, local size): this process's place among the ranks on its node, from an
    initialised Horovod or the launcher's environment, else (0, 1)."""
    hvd = _horovod()
    if hvd is not None:
        return hvd.local_rank(), hvd.local_size()
    found = _from_env(_LOCAL_ENV)
    if found is not None:
        return found
    per_node = os.environ.get("SLURM_TASKS_PER_NODE")
    if "SLURM_LOCALID" in os.environ and per_node:
        return int(os.environ["SLURM_LOCALID"]), int(per_node.split("(")[0].split(",")[0])  # "4(x2),2" -> 4
    return 0, 1


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which batch systems and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def available_memory() -> int | None:
    """Bytes this process can still use: the kernel's MemAvailable, lowered to what is left of
    a cgroup limit (batch systems and containers set one); None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def cpu_share(local_size: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """(intra-op threads, DataLoader workers) for one of ``local_size`` ranks on a node with
    ``cores``: the node's cores divided among its ranks, so N ranks never run N x cores compute
    threads. The model's threads take the whole share; loader workers, which mostly wait on the
    disk and decode light tar members, are half the share (at most 4), and a one-core share
    loads in the main process (0 workers)."""
    local_size = local_size or local_world()[1]
    cores = cores or usable_cores()
    share = max(1, cores // max(1, local_size))
    return share, min(4, share // 2)


def capped(option: str, requested: int, limits: dict[str, int]) -> int:
    """``requested`` bounded by what the machine and the input can use (``limits``: why -> the
    most it allows); when it is cut, a note on stderr says to what and why, once."""
    n = min([requested, *(max(1, v) for v in limits.values())])
    if n < requested:
        why = next(k for k, v in limits.items() if max(1, v) == n)
        print(f"note: {option} {requested} capped at {n} (bound by {why})", file=sys.stderr, flush=True)
    return n


def size_to_node(threads: int | None = None, workers: int | None = None,
                 local_size: int | None = None) -> tuple[int, int, int, int]:
    """(threads, workers, local size, usable cores) for this process, and torch set to the
    threads: a given value wins, then OMP_NUM_THREADS for the threads, then ``cpu_share`` of
    the node among its ``local_size`` ranks (default: the launcher's). One place for the
    trainer and the evaluation, so N processes on a node never take N x cores threads
    (measured: 2 Horovod ranks on 2 cores, ResNet-50, 2.0-2.6 images/s per rank with every rank
    taking all the threads, 8.3-9.1 with one each)."""
    import torch

    local_size = local_size or local_world()[1]
    cores = usable_cores()
    share_threads, share_workers = cpu_share(local_size, cores)
    source = "--threads"
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads, source = (int(env), "OMP_NUM_THREADS") if env.isdigit() and int(env) > 0 else (share_threads, "")
    workers = share_workers if workers is None else capped("--workers", workers, {f"{cores} usable cores": cores})
    threads = capped(source, threads, {f"{cores} usable cores": cores}) if source else threads
    torch.set_num_threads(threads)
    return threads, workers, local_size, cores
