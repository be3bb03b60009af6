"""Spreading tiles over workers as Sedona et al. 2019, Algorithm 1 does.

Tiles are sorted by patch count, largest first, and dealt to the n workers in rows of n whose
direction alternates (0..n-1, then n-1..0, ...), so every worker gets a similar total.
"""
from __future__ import annotations


def serpentine(items: list, counts: list[int], n_workers: int) -> list[list]:
    """Assign ``items`` (with ``counts`` patches each) to ``n_workers``; returns one list per worker."""
    if n_workers < 1:
        raise ValueError("n_workers must be >= 1")
    # ties broken by the item's position so the plan is deterministic
    order = sorted(range(len(items)), key=lambda i: (-counts[i], i))
    out: list[list] = [[] for _ in range(n_workers)]
    for k, i in enumerate(order):
        row, col = divmod(k, n_workers)
        worker = col if row % 2 == 0 else n_workers - 1 - col
        out[worker].append(items[i])
    return out
