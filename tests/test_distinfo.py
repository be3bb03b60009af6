"""bigearth/distinfo.py: rank, world and the node's share, from each launcher's environment."""
import pytest

from bigearth import distinfo

LAUNCHERS = [({"HOROVOD_LOCAL_RANK": "1", "HOROVOD_LOCAL_SIZE": "4"}, (1, 4)),
             ({"LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "3"}, (2, 3)),
             ({"OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "8"}, (0, 8)),
             ({"MPI_LOCALRANKID": "5", "MPI_LOCALNRANKS": "6"}, (5, 6)),
             ({"SLURM_LOCALID": "3", "SLURM_TASKS_PER_NODE": "4(x2),2"}, (3, 4)),
             ({}, (0, 1))]


@pytest.mark.parametrize("env,expected", LAUNCHERS)
def test_local_rank_and_size_from_the_launcher(monkeypatch, env, expected):
    for r, s in distinfo._LOCAL_ENV:
        monkeypatch.delenv(r, raising=False)
        monkeypatch.delenv(s, raising=False)
    for k in ("SLURM_LOCALID", "SLURM_TASKS_PER_NODE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert distinfo.local_world() == expected


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8, 16, 64])
@pytest.mark.parametrize("local", [1, 2, 3, 4, 8])
def test_the_ranks_of_a_node_share_its_cores(cores, local):
    threads, workers = distinfo.cpu_share(local, cores)
    share = max(1, cores // local)
    assert local * threads <= max(cores, local)  # compute threads: never more than the node has
    assert threads == share  # and the whole share is used
    assert workers == min(4, share // 2)  # light loader processes: half the share, none on one core
