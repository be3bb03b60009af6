"""What a rerun does to the run already in its output folder: it refuses, resumes it, or sets it
aside until the new run has a checkpoint of its own. Nothing a run made is lost by typing the
command again (``train`` and ``sr-train`` share this; issue 35).

The old run is set aside in two steps so that a kill at any moment is recoverable: its files are
renamed into ``.replacing/``, which is then renamed ``.replaced/`` (one atomic rename). The next
run into the folder settles what it finds: ``.replacing/`` (the move was cut short) or
``.replaced/`` without a new checkpoint (the new run died before its first one) is moved back;
``.replaced/`` beside a new checkpoint is removed, as the new run would have done."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterable

from .errors import OptionError

ASIDE = ".replaced"
MOVING = ".replacing"
LOCK = ".lock"  # bigearth.files.folder_lock's file: the new run holds it, it stays


def add_flags(p, what: str) -> None:
    """--resume, --resume-if-present and --overwrite (one at most) on ``p``; ``what`` names the
    checkpoint(s) in the output folder."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help=f"go on from the {what} in the output folder; refused when there is none")
    g.add_argument("--resume-if-present", action="store_true",
                   help=f"go on from the {what} when there is one, else start a new run and say so (for jobs "
                        f"that are requeued)")
    g.add_argument("--overwrite", action="store_true",
                   help=f"start a new run in an output folder that holds one: the old run is moved to {ASIDE}/ "
                        f"in it, and removed when the new run writes its first checkpoint")


class Takeover:
    """The run an ``--overwrite`` set aside (or nothing): removed by ``release()`` once the new run
    has its first checkpoint, given back when the ``with`` ends before that (an error, a stop, a
    diverged loss: whatever ended the new run, it left nothing to replace the old one with)."""

    def __init__(self, folder: Path, aside: Path | None = None):
        self.folder, self.aside = folder, aside

    def release(self) -> None:
        """The new run's first checkpoint exists: the old run is no longer needed."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def __enter__(self) -> "Takeover":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.aside is not None:
            _move_back(self.aside, self.folder)
            print(f"note: this run ended before its first checkpoint: the run it was to replace is back in "
                  f"{self.folder}", file=sys.stderr, flush=True)
            self.aside = None


def take_over(folder: Path, checkpoints: Iterable[Path], describe: Callable[[Path], str], *, resume: bool,
              if_present: bool, overwrite: bool, writer: bool = True) -> tuple[bool, Takeover]:
    """Whether the run goes on from ``checkpoints`` (in ``folder``), and what it set aside.

    Without a flag, a folder holding a checkpoint is refused, naming it and ``describe(path)`` (its
    epoch); ``resume`` without one is refused; ``if_present`` starts a new run and says so;
    ``overwrite`` sets the old run aside. Only the ``writer`` (rank 0) moves anything; the other
    ranks of a distributed run take the same decision from what they see."""
    folder = Path(folder)
    checkpoints = [Path(c) for c in checkpoints]
    if writer:
        settle(folder, checkpoints)
    found = [c for c in checkpoints if c.exists()]
    if not found and not writer:  # rank 0 may be settling an interrupted --overwrite: what it will give back
        found = [c for c in checkpoints for d in (ASIDE, MOVING) if (folder / d / c.name).exists()]
    if found and not (resume or if_present or overwrite):
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise OptionError(f"{found[0]}{more} holds a run ({describe(found[0])}): add --resume to go on with it, or "
                          f"--overwrite to start a new one (the old run is kept aside until the new run's first "
                          f"checkpoint)")
    if not found and resume:
        names = ", ".join(c.name for c in checkpoints)
        raise OptionError(f"--resume: {folder} holds no checkpoint ({names}) to resume; check the folder's name, "
                          f"or use --resume-if-present to start a new run when there is none")
    if not found:
        if if_present and writer:
            print(f"note: no checkpoint in {folder}: a new run starts (--resume-if-present)", flush=True)
        return False, Takeover(folder)
    if not overwrite:
        return True, Takeover(folder)
    if not writer:
        return False, Takeover(folder)
    what = describe(found[0])
    aside = _set_aside(folder)
    print(f"note: --overwrite: the run in {folder} ({what}) is moved to {aside}; it is removed when this run "
          f"writes its first checkpoint", flush=True)
    return False, Takeover(folder, aside)


def settle(folder: Path, checkpoints: list[Path]) -> None:
    """Finish what an interrupted ``--overwrite`` left (see the module's doc)."""
    moving, aside = folder / MOVING, folder / ASIDE
    if moving.is_dir():
        _move_back(moving, folder)
        print(f"note: an --overwrite was stopped while it moved the old run aside: the run is back in {folder}",
              file=sys.stderr, flush=True)
    if aside.is_dir():
        if any(c.exists() for c in checkpoints):
            shutil.rmtree(aside, ignore_errors=True)  # the new run had its first checkpoint: the old is done with
        else:
            _move_back(aside, folder)
            print(f"note: the run that an --overwrite set aside in {aside} never got a checkpoint of its own: "
                  f"the old run is back in {folder}", file=sys.stderr, flush=True)


def _set_aside(folder: Path) -> Path:
    moving, aside = folder / MOVING, folder / ASIDE
    moving.mkdir()
    for entry in sorted(folder.iterdir()):
        if entry.name not in (LOCK, MOVING, ASIDE):
            os.rename(entry, moving / entry.name)
    os.rename(moving, aside)  # the move is complete in one step
    return aside


def _move_back(src: Path, folder: Path) -> None:
    """Every entry of ``src`` back into ``folder``, over what a new run wrote under its names."""
    for entry in sorted(src.iterdir()):
        target = folder / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.rename(entry, target)
    src.rmdir()
