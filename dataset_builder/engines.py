"""Running the plan: in this process, on local worker processes, or on MPI ranks, with tiles
dealt by Algorithm 1 (serpentine); a worker that fails fatally ends the build with its error."""
from __future__ import annotations

import signal
import sys
import traceback

from bigearth.errors import EnvironmentFailure, InputError
from bigearth.stopping import Stopped, ignore_in_worker, start_helpers_shielded

from .config import BuildConfig
from .schedule import serpentine
from .tasks import Task, run_task


def _worker_main(worker: int, tasks: list[Task], cfg: BuildConfig, queue) -> None:
    ignore_in_worker()  # Ctrl-C, SIGTERM and SIGHUP are the parent's to handle: it ends the workers
    import torch
    torch.set_num_threads(1)
    for t in tasks:
        try:
            res = run_task(t, cfg)
        except BaseException as e:  # strict mode, a full disk, or a bug: report it instead of dying silently
            res = _fatal(t, e)
        queue.put(res)
        if res.get("fatal"):
            return


# A worker process costs ~2 s to start (spawn, then importing numpy, torch, rasterio, h5py): one
# is started for at least this much expected work (seconds of one core), so small builds stay in
# this process
MIN_WORK_PER_WORKER_S = 10.0


def choose_workers(tasks: list[Task], requested: int | None) -> tuple[int, str]:
    """(local worker processes, why). ``requested`` wins; else every core this process may use
    (its affinity: what taskset or the batch system gave it), but no more than the tasks, than
    the expected work pays for, or than the available memory holds."""
    from bigearth.distinfo import available_memory, capped, usable_cores

    from .tasks import expected_bytes

    cores = usable_cores()
    limits = {f"{cores} usable cores": cores, f"{len(tasks)} tasks": max(1, len(tasks))}
    mem = available_memory()
    if mem is not None and tasks:
        need = max(expected_bytes(t) for t in tasks)
        limits[f"{mem / 2 ** 30:.1f} GiB available for {need / 2 ** 30:.2f} GiB per task"] = max(1, int(0.8 * mem // need))
    if requested is not None:  # a count past the cores, the tasks or the memory only forks idle or starved processes
        n = capped("--workers", requested, limits)
        return n, "--workers" if n == requested else f"--workers {requested} capped: bound by " + next(
            k for k, v in limits.items() if v == n)
    work = sum(t.work for t in tasks)
    limits[f"{work:.0f} s of expected work"] = max(1, int(work // MIN_WORK_PER_WORKER_S))
    n = min(limits.values())
    return n, "bound by " + next(k for k, v in limits.items() if v == n)


def run_local(tasks: list[Task], cfg: BuildConfig, workers: int) -> list[dict]:
    """Run the plan on ``workers`` local processes (or in this process when workers == 1)."""
    from tqdm import tqdm

    results = []
    if workers <= 1:
        # a bar within the bar moves the cursor up: only where a terminal reads it, never in a log
        nested = cfg.progress and sys.stderr.isatty()
        with _bar(tasks, "tiles", cfg) as bar:  # closed before a stop's or an error's line is said
            for t in tasks:
                with tqdm(total=max(1, int(round(t.count ** 0.5))) if t.kind == "product" else t.count,
                          desc=t.id[:38], unit="row" if t.kind == "product" else "patch", leave=False,
                          disable=not nested, position=1) as inner:
                    results.append(run_task(t, cfg, inner.update))
                bar.update(t.count)
                bar.set_postfix_str(_status(results, len(tasks)))
        return results

    import multiprocessing as mp
    start_helpers_shielded()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    plan = serpentine(tasks, [t.work for t in tasks], workers)
    procs = [ctx.Process(target=_worker_main, args=(w, plan[w], cfg, queue), daemon=True) for w in range(workers)]
    for p in procs:
        p.start()
    bar = _bar(tasks, f"tiles ({workers} workers)", cfg)
    try:
        _collect(results, tasks, procs, queue, bar)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: end the workers now (their finished parts are kept)
        for p in procs:
            p.kill()
        for p in procs:  # reaped, so that their temporaries read as a dead run's and are removed
            p.join(10)
        raise
    finally:  # the bar's last line before whatever is said next (a stop, an error), never after it
        bar.close()
    for p in procs:
        p.join()
    return results


def _collect(results: list, tasks: list[Task], procs: list, queue, bar) -> None:
    """Gather the workers' results into ``results``; a worker that dies or fails fatally ends the build."""
    import queue as _q
    count = {t.id: t.count for t in tasks}
    while len(results) < len(tasks):
        try:
            res = queue.get(timeout=1.0)
        except _q.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:  # a worker killed by a signal or crashed: end the build, never hang
                for p in procs:
                    p.kill()
                raise RuntimeError(f"a build worker died (exit code {dead[0].exitcode})") from None
            continue
        results.append(res)
        bar.update(count.get(res.get("task"), 0))
        bar.set_postfix_str(_status(results, len(tasks)))
        if res.get("fatal"):
            for p in procs:
                p.kill()
            _raise_fatal(res)


def rank_threads(ranks_here: int) -> int:
    """Threads for one of ``ranks_here`` MPI ranks on this node. Unbound ranks (each may run on
    every core, as plain mpirun starts them) share the node's cores: torch would start one thread
    per core in every rank, N x cores threads in all, each rank slower than alone. Ranks a batch
    system bound to their own cores (srun --cpus-per-task) use those."""
    import os

    from bigearth.distinfo import usable_cores
    mine = usable_cores()
    if mine * ranks_here <= (os.cpu_count() or mine):  # bound: the ranks' core sets fit the node side by side
        return mine
    return max(1, mine // ranks_here)


def run_mpi(tasks: list[Task], cfg: BuildConfig) -> list[dict] | None:
    """Each MPI rank builds its share; rank 0 gathers the results (others return None)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    import torch
    torch.set_num_threads(rank_threads(comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()))
    mine = serpentine(tasks, [t.work for t in tasks], size)[rank]
    out, stopped = [], 0
    for t in mine:
        try:
            out.append(run_task(t, cfg))
        except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: this rank's finished parts are kept
            stopped = getattr(e, "signum", signal.SIGINT)
            break
        except BaseException as e:  # strict mode, a full disk, or a bug: this rank stops and reports it
            sys.stderr.write(f"rank {rank}: {t.id}: {e}\n")
            out.append(_fatal(t, e))
            break
        if cfg.progress:  # one line per tile and rank: a bar per rank would interleave on one terminal
            sys.stderr.write(f"[rank {rank}] {t.id}: {_status(out, len(mine))}\n")
            sys.stderr.flush()
    # every rank reaches the gather (a failed one right away), so nothing hangs, and rank 0 sees a
    # fatal result before it writes anything: no archive is merged beside a failure (an MPI_Abort
    # here raced with rank 0's merge: an archive without a manifest was seen)
    gathered = comm.gather((out, stopped), root=0)
    if rank == 0:  # another rank stopped: so does the build (the parts are kept for the rerun)
        stopped = stopped or next((sig for _, sig in gathered if sig), 0)
    if stopped:  # said by every stopped rank as by a local build (run_command: Ctrl-C's line for SIGINT)
        raise Stopped(stopped)
    if rank != 0:
        return None
    results = [r for rs, _ in gathered for r in rs]
    fatal = [r for r in results if r.get("fatal")]
    if fatal:
        _raise_fatal(fatal[0])
    return results


def _fatal(task: Task, e: BaseException) -> dict:
    """A result that ends the build, as a worker or rank sends it to the parent."""
    kind = "environment" if isinstance(e, EnvironmentFailure) else "input" if isinstance(e, InputError) else "bug"
    return {"task": task.id, "status": "failed", "error": str(e) if kind != "bug" else f"{type(e).__name__}: {e}",
            "kind": kind, "traceback": traceback.format_exc(), "fatal": True}


def _raise_fatal(res: dict):
    """In the parent: the error a worker ended with, as the same kind of exception."""
    if res.get("kind") == "environment":
        raise EnvironmentFailure(res["error"])
    if res.get("kind") == "input":
        raise InputError(res["task"], res["error"].removeprefix(f"{res['task']}: "))
    raise RuntimeError(f"{res['task']}: {res['error']}\n{res.get('traceback', '')}")


def _bar(tasks: list[Task], desc: str, cfg: BuildConfig):
    """The build's bar: grid patches and patch folders done of all (each tile's when it ends), so
    its rate and time left (tqdm's ETA) weigh a large tile more than a small one."""
    from tqdm import tqdm
    return tqdm(total=sum(t.count for t in tasks), desc=desc, unit="patch", unit_scale=True,
                disable=not cfg.progress, smoothing=0.1)


def _status(results: list[dict], n_tasks: int | None = None) -> str:
    """The bar's postfix: tiles done and totals so far (the failures' reasons come after the
    build, in full)."""
    kept = sum(r.get("kept", 0) for r in results if r.get("status") == "ok")
    failed = sum(r.get("status") != "ok" for r in results)
    resumed = sum(bool(r.get("resumed")) for r in results)
    return ((f"tile {len(results)}/{n_tasks}, " if n_tasks else "") + f"kept {kept}"
            + (f", {failed} failed" if failed else "") + (f", {resumed} resumed" if resumed else ""))
