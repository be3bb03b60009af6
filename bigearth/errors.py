"""Errors whose message is the whole story: the commands print them (no traceback) and exit 1.

Every message names the file or the resource and what is wrong with it."""
from __future__ import annotations

import sys


class ReportedError(Exception):
    """Base of the errors a command reports as one line."""


class InputError(ReportedError):
    """Bad input data; ``path`` is the offending file, ``problem`` what is wrong."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OptionError(ReportedError):
    """An option that the inputs contradict (a scene key no input has, nothing left to do);
    the message starts with the option."""


class TrainingDiverged(ReportedError):
    """A loss or the weights became NaN or Inf; the last good checkpoint is kept."""


class EnvironmentFailure(ReportedError):
    """The machine, not the data: disk full, an unwritable folder, an output held by another run.
    Ends the run (every other input would fail the same way); the message says what to do."""


def run_command(fn, *args, kept: str = "") -> int:
    """``fn(*args)`` as a command: its return code, or 1 with ``error: <message>`` on stderr for a
    ReportedError or an OSError naming a file (bugs keep their traceback); Ctrl-C (SIGINT) is one
    line and 130, the shell's code for it, saying what is kept (``kept``); SIGTERM and SIGHUP the
    same line and 143 and 129 (``bigearth.stopping``)."""
    from .stopping import exit_code, stop_line, stop_on_signals
    try:
        with stop_on_signals():
            return fn(*args)
    except ReportedError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:
        if e.filename is None:  # no file to name: a bug or the machine, with its traceback
            raise
        # the operating system refused a file (a name too long, a permission, a loop of links):
        # one line naming it, as for bad input
        print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP (bigearth.stopping.Stopped)
        print(f"\n{stop_line(e, kept)}", file=sys.stderr, flush=True)
        return exit_code(e)
