"""Spreading tiles over workers as Sedona et al. 2019, Algorithm 1 does, and two references.

Algorithm 1 as printed cannot run as written: its ``n - size(t) > 0`` test is inverted, ``b`` is
never defined, every row after the first is reversed instead of every other one, and nothing
sorts the tiles although the deal only balances when they come largest first. What we implement
is what it evidently means: tiles sorted by size, largest first, dealt to the n workers in rows
of n whose direction alternates (0..n-1, then n-1..0, ...), the "serpentine" deal.
``round_robin`` (no balancing) and ``greedy`` (largest first to the least-loaded worker,
Graham's LPT rule) are the baselines it is measured against (benchmarks/algorithm1.py).
"""
from __future__ import annotations

import heapq


def _check(n_workers: int) -> None:
    if n_workers < 1:
        raise ValueError("n_workers must be >= 1")


def _largest_first(counts: list[float]) -> list[int]:
    # ties broken by the item's position so the plan is deterministic
    return sorted(range(len(counts)), key=lambda i: (-counts[i], i))


def serpentine(items: list, counts: list[float], n_workers: int) -> list[list]:
    """Algorithm 1: assign ``items`` (``counts`` work each) to ``n_workers``; one list per worker."""
    _check(n_workers)
    out: list[list] = [[] for _ in range(n_workers)]
    for k, i in enumerate(_largest_first(counts)):
        row, col = divmod(k, n_workers)
        worker = col if row % 2 == 0 else n_workers - 1 - col
        out[worker].append(items[i])
    return out


def round_robin(items: list, counts: list[float], n_workers: int) -> list[list]:
    """Item i to worker i mod n, in the given order (``counts`` unused: no balancing)."""
    _check(n_workers)
    return [list(items[w::n_workers]) for w in range(n_workers)]


def greedy(items: list, counts: list[float], n_workers: int) -> list[list]:
    """Largest first, each to the worker with the least work so far (LPT; within 4/3 of optimal)."""
    _check(n_workers)
    out: list[list] = [[] for _ in range(n_workers)]
    heap = [(0.0, w) for w in range(n_workers)]
    for i in _largest_first(counts):
        load, w = heapq.heappop(heap)
        out[w].append(items[i])
        heapq.heappush(heap, (load + counts[i], w))
    return out


DEALS = {"serpentine": serpentine, "round-robin": round_robin, "greedy": greedy}
