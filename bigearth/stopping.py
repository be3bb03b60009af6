"""How a command stops when it is told to: SIGTERM and SIGHUP end it as Ctrl-C does.

A cluster stops a job with SIGTERM (SLURM at its time limit or on preemption, ``scancel``, ``kill``,
``docker stop``, Kubernetes) and a closed terminal sends SIGHUP. Left at their default, both end the
process at once: no line, no ``finally``, the lock's file and the temporaries left behind. Here they
raise :class:`Stopped` in the main thread, a ``KeyboardInterrupt``, so every path that already ends
cleanly on Ctrl-C (workers ended, temporaries removed, locks released) does so for them too; the
command says one line and exits 128 + the signal's number (143 for SIGTERM, 129 for SIGHUP), the
codes a shell reports for a process the signal killed.

Where stopping mid-way would lose work that finishing a step keeps (the trainer's step in flight),
:func:`deferred` records the signal instead, and the caller stops at the next point it chooses.
A signal its parent told the process to ignore (``nohup``'s SIGHUP, a shell's background SIGINT)
stays ignored.
"""
from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The process was sent ``signum`` (SIGTERM or SIGHUP, or SIGINT where it was deferred)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum


def stop_line(e: KeyboardInterrupt, kept: str = "") -> str:
    """The one line a command stopped by ``e`` (Ctrl-C, or :class:`Stopped`) ends with, saying what
    is kept for the rerun; the exit code is ``exit_code(e)``."""
    said = f"stopped by {e.name}" if isinstance(e, Stopped) and e.signum != signal.SIGINT else "interrupted"
    return f"{said}; rerun the same command to resume{f' ({kept})' if kept else ''}"


def exit_code(e: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process the signal killed (130 for Ctrl-C)."""
    return e.exit_code if isinstance(e, Stopped) else 128 + signal.SIGINT


_pending: list[int] = []  # signals received while deferred, in order
_deferring = [0]  # depth of nested deferred() blocks


def _handler(signum, frame) -> None:
    if _deferring[0] and not _pending:
        _pending.append(signum)  # the caller stops at its next safe point
        return
    raise Stopped(signum)  # not deferred, or asked twice: stop now


def _ours(signum: int, default) -> bool:
    """``signum``'s handler is the default one, so that making it raise changes no one's choice."""
    return signal.getsignal(signum) in (signal.SIG_DFL, default)


@contextlib.contextmanager
def stop_on_signals():
    """Within: SIGTERM and SIGHUP raise :class:`Stopped` in the main thread (elsewhere, where no
    handler can be installed, nothing changes); the handlers before are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        if _ours(s, None):
            signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred():
    """Within: SIGTERM, SIGHUP and Ctrl-C are recorded (see :func:`pending`), not raised; a second
    one raises at once. Use where a step should finish and its result be kept before stopping."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in (*SIGNALS, signal.SIGINT)}
    for s in SIGNALS:
        if _ours(s, None) or before[s] is _handler:
            signal.signal(s, _handler)
    if _ours(signal.SIGINT, signal.default_int_handler):
        signal.signal(signal.SIGINT, _handler)
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
        if not _deferring[0]:
            _pending.clear()
        for s, h in before.items():
            signal.signal(s, h)


def pending() -> int | None:
    """The signal received within :func:`deferred` (None if none): the caller should stop."""
    return _pending[0] if _pending else None


def ignore_in_worker(*_) -> None:
    """For a worker process its parent ends (arguments, e.g. a DataLoader worker's id, unused):
    Ctrl-C, SIGTERM and SIGHUP are the parent's to handle (a process group signalled at once would
    otherwise lose a worker before the parent can end the run cleanly, and it would report a crash)."""
    for s in (signal.SIGINT, *SIGNALS):
        signal.signal(s, signal.SIG_IGN)


def start_helpers_shielded() -> None:
    """Start multiprocessing's resource tracker (the helper process every spawn-started worker
    pool shares) with SIGHUP ignored, as it already ignores SIGINT and SIGTERM: a closed terminal
    signals the whole process group, and a tracker dead of it makes the run's end print a
    traceback instead of the one line. Call before creating queues or pools."""
    if threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import resource_tracker
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # an ignored signal stays ignored across exec
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, before)
