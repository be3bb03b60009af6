"""dataset_builder/engines.py: how many local workers a build starts when none is asked for."""
import types

import pytest

from bigearth import distinfo
from dataset_builder.engines import MIN_WORK_PER_WORKER_S, choose_workers
from dataset_builder.tasks import PATCH_TASK_BYTES, Task


def _tasks(n, work, kind="bigearthnet", side=10980):
    src = types.SimpleNamespace(geocoding=types.SimpleNamespace(size_10m=side)) if kind == "product" else []
    return [Task(f"t{i}", kind, src, 8281, work) for i in range(n)]


@pytest.fixture
def node(monkeypatch):
    def set_node(cores, mem):
        monkeypatch.setattr(distinfo, "usable_cores", lambda: cores)
        monkeypatch.setattr(distinfo, "available_memory", lambda: mem)
    return set_node


def test_asked_for_wins_within_what_the_machine_and_the_input_use(node, capsys):
    node(64, 1 << 40)
    assert choose_workers(_tasks(8, 1.0), 5) == (5, "--workers")
    assert capsys.readouterr().err == ""
    # --workers 100000 forked hundreds of processes: capped at the tasks, the cores, the memory, and said
    n, why = choose_workers(_tasks(8, 1.0), 100_000)
    assert n == 8 and why == "--workers 100000 capped: bound by 8 tasks"
    assert "note: --workers 100000 capped at 8 (bound by 8 tasks)" in capsys.readouterr().err
    node(4, 1 << 40)
    assert choose_workers(_tasks(40, 1.0), 100_000) == (4, "--workers 100000 capped: bound by 4 usable cores")
    per_task = 1.5 * (10980 ** 2 * 2 * (4 + 6 / 4 + 2 / 36) + 5490 ** 2)
    node(64, int(2 * per_task / 0.8) + 1)
    n, why = choose_workers(_tasks(40, 1.0, "product"), 16)
    assert n == 2 and "GiB available" in why


def test_every_core_when_the_work_pays(node):
    node(16, 1 << 40)
    n, why = choose_workers(_tasks(40, 100.0), None)
    assert n == 16 and "16 usable cores" in why


def test_no_more_workers_than_tasks(node):
    node(16, 1 << 40)
    assert choose_workers(_tasks(3, 100.0), None)[0] == 3


def test_small_builds_stay_in_one_process(node):
    node(16, 1 << 40)
    assert choose_workers(_tasks(8, MIN_WORK_PER_WORKER_S / 8 * 0.9), None)[0] == 1
    assert choose_workers(_tasks(8, MIN_WORK_PER_WORKER_S / 8 * 4.1), None)[0] == 4


def test_memory_bounds_the_product_workers(node):
    # a full tile: 10,980^2 pixels x 2 bytes x 5.56 planes + the SCL, with half again in flight
    per_task = 1.5 * (10980 ** 2 * 2 * (4 + 6 / 4 + 2 / 36) + 5490 ** 2)
    node(16, int(8 * per_task / 0.8) + 1)
    n, why = choose_workers(_tasks(100, 60.0, "product"), None)
    assert n == 8 and "GiB available" in why
    # patch folders need little: the same memory does not bound them
    assert 8 * per_task > 16 * PATCH_TASK_BYTES
    assert choose_workers(_tasks(100, 60.0), None)[0] == 16


def test_available_memory_is_within_the_machine():
    import os

    mem = distinfo.available_memory()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert mem is not None and 0 < mem <= total


def test_mpi_ranks_share_the_cores_they_can_all_run_on(monkeypatch):
    """Unbound ranks split the node's cores; ranks bound to their own cores keep them."""
    import os

    from bigearth import distinfo
    from dataset_builder.engines import rank_threads
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(distinfo, "usable_cores", lambda: 16)  # plain mpirun: every rank sees all 16
    assert [rank_threads(n) for n in (1, 2, 4, 32)] == [16, 8, 4, 1]
    monkeypatch.setattr(distinfo, "usable_cores", lambda: 4)  # srun --cpus-per-task=4, 4 ranks a node
    assert rank_threads(4) == 4
