"""Errors about input data: every message names the file and what is wrong with it."""
from __future__ import annotations


class InputError(Exception):
    """Bad input data; ``path`` is the offending file, ``problem`` what is wrong."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
