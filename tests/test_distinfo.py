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


def test_asked_counts_past_the_cores_are_capped_and_said(monkeypatch, capsys):
    """--workers 100000 forked a process per worker: a count past the usable cores is cut to them,
    with a note naming what was asked (the option, or OMP_NUM_THREADS) and why; within them it stands."""
    import torch
    before = torch.get_num_threads()
    monkeypatch.setattr(distinfo, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert distinfo.size_to_node(threads=2, workers=3, local_size=1)[:2] == (2, 3)
        assert capsys.readouterr().err == ""
        assert distinfo.size_to_node(threads=64, workers=100_000, local_size=1)[:2] == (4, 4)
        err = capsys.readouterr().err
        assert "note: --workers 100000 capped at 4 (bound by 4 usable cores)" in err
        assert "note: --threads 64 capped at 4 (bound by 4 usable cores)" in err
        monkeypatch.setenv("OMP_NUM_THREADS", "32")
        assert distinfo.size_to_node(local_size=1)[0] == 4
        assert "note: OMP_NUM_THREADS 32 capped at 4" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
