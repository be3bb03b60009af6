"""argparse types that check a value where it is parsed, so a bad option fails at once with the
allowed range (``argument --workers: must be an integer >= 1, got '-2'``) instead of deep in a
run. Every command of the package uses these."""
from __future__ import annotations

import argparse
import math
import sys

PATCH_M = 1200  # the patch grid: tile sizes are whole patches (bigearth.record.PATCH_M)
S2_TILE_M = 109_800  # a Sentinel-2 MGRS tile's side: no product is larger


def _number(kind, text):
    try:
        v = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def int_at_least(lo: int):
    """An integer >= ``lo``."""
    def parse(text):
        v = _number(int, text)
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}")
        return v
    parse.__name__ = f"integer >= {lo}"
    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def float_in(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    """A finite number in the interval [lo, hi] (ends open where asked; ``hi`` None: unbounded)."""
    left, right = "(" if lo_open else "[", ")" if hi_open or hi is None else "]"
    span = f"{left}{lo:g}, {'inf' if hi is None else f'{hi:g}'}{right}"

    def parse(text):
        v = _number(float, text)
        if v < lo or (lo_open and v == lo) or (hi is not None and (v > hi or (hi_open and v == hi))):
            raise argparse.ArgumentTypeError(f"must be in {span}, got {text!r}")
        return v
    parse.__name__ = f"number in {span}"
    return parse


fraction = float_in(0.0, 1.0)  # a share: thresholds, cloud cover
positive_float = float_in(0.0, None, lo_open=True)


def tile_size_m(text):
    """A tile side in metres: a positive multiple of the 1,200 m patch, at most a Sentinel-2
    tile's 109,800 m (past it a product does not exist, and its bands would not fit in memory)."""
    v = _number(int, text)
    if v <= 0 or v % PATCH_M:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of {PATCH_M} m, got {text!r}")
    if v > S2_TILE_M:
        raise argparse.ArgumentTypeError(f"must be at most {S2_TILE_M} m, a Sentinel-2 tile's side, got {text!r}")
    return v


def split_fractions(text):
    """``train,validation,test`` shares: three non-negative numbers adding up to 1."""
    parts = str(text).split(",")
    try:
        v = tuple(float(p) for p in parts)
    except ValueError:
        v = ()
    if len(v) != 3 or any(not math.isfinite(x) or x < 0 for x in v) or abs(sum(v) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"must be three non-negative shares adding up to 1 (e.g. 0.6,0.2,0.2), "
                                         f"got {text!r}")
    return v


def byte_size(text):
    """A positive size in bytes: ``256MiB``, ``1.5GB``, ``300000``."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    if isinstance(text, int):
        n = text
    else:
        t = str(text).strip().upper()
        num = t.rstrip("KMGIB")
        try:
            n = int(float(num) * units[t[len(num):]])
        except (KeyError, ValueError):
            raise argparse.ArgumentTypeError(f"must be a size such as 256MiB, 1GB or 300000, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive size, got {text!r}")
    return n


def int_list(lo: int = 0, allow_empty: bool = True):
    """Comma-separated integers >= ``lo`` (``30,60,80``)."""
    def parse(text):
        items = [s for s in str(text).split(",") if s.strip()]
        try:
            v = tuple(int(s) for s in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}") from None
        if any(x < lo for x in v) or (not v and not allow_empty):
            raise argparse.ArgumentTypeError(f"must be comma-separated integers >= {lo}, got {text!r}")
        return v
    parse.__name__ = "integer list"
    return parse


def blocks_per_stage(text):
    """ResNet blocks per stage: four positive integers (``1,1,1,1``), or empty for the
    architecture's own; returned as the normalised text the checkpoints record."""
    text = str(text).strip()
    if not text:
        return ""
    try:
        v = [int(s) for s in text.split(",")]
    except ValueError:
        v = []
    if len(v) != 4 or any(x < 1 for x in v):
        raise argparse.ArgumentTypeError(f"must be four positive integers, one per ResNet stage (e.g. 1,1,1,1 or "
                                         f"3,4,6,3), or '' for the architecture's own, got {text!r}")
    return ",".join(map(str, v))


def choice_list(allowed):
    """Comma-separated names, each one of ``allowed``."""
    allowed = tuple(allowed)

    def parse(text):
        items = [s.strip() for s in str(text).split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"must be comma-separated names of {', '.join(allowed)}, got {text!r}")
        return items
    parse.__name__ = "name list"
    return parse


def torch_device(text):
    """A torch device this machine has: ``cpu``, ``cuda``, ``cuda:1``."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError):
        raise argparse.ArgumentTypeError(f"must be a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index or 0) >= n:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {n} CUDA device(s)")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"must be cpu or cuda[:N], got {text!r}")
    return str(dev)


def auto_or(parse):
    """``auto`` (the command chooses when it runs) or a value ``parse`` accepts."""
    def parse_auto(text):
        return "auto" if str(text).strip() == "auto" else parse(text)
    parse_auto.__name__ = getattr(parse, "__name__", "value")
    return parse_auto


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every command's ``--help``: each option with its default once, and descriptions laid out as
    written. A help text that already says what its default is (``default: every usable core``)
    gets no second ``(default: None)``; a switch shows ``(default: off)``, a required option
``(required)``."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if action.required:
            return f"{text} (required)" if text else "(required)"
        if action.nargs == 0 and action.default is False:  # store_true
            return f"{text} (default: off)" if text else "(default: off)"
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def split_name(text):
    """A split: ``train``, ``validation`` (``val`` is taken for it, with a note) or ``test``."""
    from bigearth.record import SPLITS, canonical_split
    name = canonical_split(str(text).strip(), note=lambda t: print(t, file=sys.stderr))
    if name not in SPLITS[:3]:
        raise argparse.ArgumentTypeError(f"must be train, validation (or val) or test, got {text!r}")
    return name


split_name.__name__ = "split"


def check_sr_model(args) -> None:
    """``--sr-model`` names shipped DSen2 weights: beside ``--sr-weights`` one of the two would be
    ignored, so the pair is refused (an OptionError)."""
    from .errors import OptionError
    if getattr(args, "sr_model", "default") != "default" and getattr(args, "sr_weights", None):
        raise OptionError(f"--sr-model {args.sr_model} and --sr-weights {args.sr_weights}: give one (--sr-model picks "
                          "the shipped weights, --sr-weights other ones)")
