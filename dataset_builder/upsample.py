"""Super-resolution of the 20 m and 60 m bands to 10 m: a pluggable step.

An upsampler maps the native cubes of a window to the 8 bands that are coarser than 10 m, at
10 m (``BANDS_SR``, in spectral order); the four 10 m bands enter ``data_super`` untouched. It
declares the context (``halo``, in 60 m pixels) it needs around a window, so the builder can
run it strip by strip and still get exactly what a whole-tile run gives: no seams at patch or
strip borders, and whether it needs the 10 m bands as guidance (``needs_10m``, as DSen2 does).
New methods register with :func:`register`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, BANDS_SR, BANDS_SUPER, PATCH_PX

if TYPE_CHECKING:
    from .interpolate import Upsampler

# The methods import torch when first used, not here: the command line lists them (``--help``,
# option parsing) without paying torch's few seconds of start-up.
_INTERPOLATE = ("Bicubic", "Bilinear", "Upsampler", "bilinear")


def __getattr__(name):  # the interpolations, re-exported here where the registry offers them
    if name in _INTERPOLATE:
        from . import interpolate
        return getattr(interpolate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _interpolation(cls: str):
    """The factory of an interpolation: it takes the options every method is called with and has
    no use for them (no weights; it runs on the CPU, in fp32), so one call serves every method."""
    def make(weights=None, device="cpu", precision="auto", adapt=0, model=None) -> Upsampler:
        from . import interpolate
        return getattr(interpolate, cls)()
    return make


def _dsen2(**options) -> Upsampler:
    from .sr.infer import DSen2  # torch networks and weights load only when asked for
    return DSen2(**options)


_REGISTRY: dict[str, Callable[..., Upsampler]] = {"bilinear": _interpolation("Bilinear"), "bicubic": _interpolation("Bicubic"),
                                                  "dsen2": _dsen2}


def register(name: str, factory: Callable[..., Upsampler]) -> None:
    _REGISTRY[name] = factory


def get(name: str, **options) -> Upsampler:
    """The upsampler registered as ``name``.

    Args:
        name: ``bilinear``, ``bicubic``, ``dsen2`` or a name given to :func:`register`.
        **options: passed to the method's factory; every built-in method takes ``weights`` (a
            bundle path, two Keras files joined by a comma, or None for the shipped default),
            ``device`` (``cpu``/``cuda``), ``precision`` (``auto``/``fp32``/``bf16``/``fp16``) and
            ``adapt`` (DSen2: fine-tuning steps on each scene's own bands under Wald's protocol
            before it is super-resolved, ``True`` for the default count; see :func:`for_scene`)
            and ``model`` (DSen2's shipped weights when ``weights`` is None: ``"default"``, the
            fast 6 x 32 network, or ``"paper"``, the published 6 x 128 size); the interpolations
            accept and ignore them (no weights, CPU, fp32, nothing to adapt, no model).

    Returns:
        An :class:`Upsampler`: ``up(b10, b20, b60)`` maps (4,H,W), (6,H/2,W/2), (2,H/6,W/6)
        float32 reflectance x 10000 to the 8 coarser bands at 10 m, (8,H,W), in ``BANDS_SR`` order.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown upsampling method {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**options)


def for_scene(up: Upsampler, pieces: Callable[[], list]) -> Upsampler:
    """The upsampler for one scene (a product's tile, one acquisition's patch folders, one piece
    under evaluation): ``up`` itself, or, for a method that adapts (``adapt=``), a copy adapted to
    ``pieces()`` ((b10, b20, b60) float32 reflectance x 10000 of that scene; called only then).
    A copy is never used for another scene."""
    if getattr(up, "adapt_steps", 0):
        return up.for_scene(pieces())
    return up


def available() -> list[str]:
    return sorted(_REGISTRY)


def _runs(cols) -> list[tuple[int, int]]:
    """Consecutive runs [x0, x1) of sorted patch columns."""
    runs: list[list[int]] = []
    for x in cols:
        if runs and runs[-1][1] == x:
            runs[-1][1] = x + 1
        else:
            runs.append([x, x + 1])
    return [(a, b) for a, b in runs]


def upsample_rows(up: Upsampler, bands: dict, convert, row0: int, row1: int, cols=None, patch: int = PATCH_PX) -> np.ndarray:
    """Super-resolve 10 m rows [row0, row1) of a tile with ``up``, using its halo for context:
    (8, row1 - row0, W) float32 in BANDS_SR order.

    ``bands`` maps band id -> full native-resolution uint16 array; ``convert(band, arr)`` turns
    DNs into the stored float convention. row0 and row1 must be multiples of 6. ``cols``, if
    given, are the patch columns (of ``patch`` pixels) whose output is used: the method runs on
    each run of consecutive ones plus the halo, and other columns are left zero.
    """
    size, width = bands[BANDS_10M[0]].shape
    h = 6 * up.halo
    a, b = max(0, row0 - h), min(size, row1 + h)
    out = np.zeros((len(BANDS_SR), row1 - row0, width), np.float32)
    spans = [(0, width)] if cols is None else [(x0 * patch, min(width, x1 * patch)) for x0, x1 in _runs(sorted(cols))]
    for c0, c1 in spans:
        ca, cb = max(0, c0 - h), min(width, c1 + h)
        b10 = np.stack([convert(n, bands[n][a:b, ca:cb]) for n in BANDS_10M]) if up.needs_10m else None
        b20 = np.stack([convert(n, bands[n][a // 2:b // 2, ca // 2:cb // 2]) for n in BANDS_20M])
        b60 = np.stack([convert(n, bands[n][a // 6:b // 6, ca // 6:cb // 6]) for n in BANDS_60M])
        res = up(b10, b20, b60, region=(row0 - a, row1 - a, c0 - ca, c1 - ca))
        out[:, :, c0:c1] = res[:, row0 - a:row1 - a, c0 - ca:c1 - ca]
    return out


def _with_margin(center: np.ndarray, nb: dict, m: int) -> np.ndarray:
    """(C, p, p) -> (C, p+2m, p+2m): the m pixels around ``center`` from its neighbours ``nb``
    ({(dy, dx): (C, p, p) or None}), a missing one replaced by the mirror image of what lies
    next to it, row band by row band, so that at the edge of a rectangular mosaic every patch
    sees what a whole-mosaic run with mirrored edges would see."""
    p = center.shape[1]
    if m > p:
        raise ValueError(f"a margin of {m} px is wider than the {p} px patch it surrounds")

    def band(mid, left, right):  # one row band, widened by m columns on each side
        lpart = left[:, :, p - m:] if left is not None else np.flip(mid[:, :, :m], 2)
        rpart = right[:, :, :m] if right is not None else np.flip(mid[:, :, p - m:], 2)
        return np.concatenate([lpart, mid, rpart], axis=2)

    middle = band(center, nb.get((0, -1)), nb.get((0, 1)))
    rows = []
    for dy, sl in ((-1, slice(p - m, p)), (1, slice(0, m))):
        c = nb.get((dy, 0))
        if c is not None:
            side = [nb.get((dy, dx)) for dx in (-1, 1)]
            rows.append(band(c[:, sl], *[None if s is None else s[:, sl] for s in side]))
        else:  # mirror the middle band's rows next to this side
            rows.append(np.flip(middle[:, :m] if dy < 0 else middle[:, p - m:], 1))
    return np.concatenate([rows[0], middle, rows[1]], axis=1)


def upsample_with_context(up: Upsampler, b10: np.ndarray | None, b20: np.ndarray, b60: np.ndarray,
                          neighbours: dict | None = None) -> np.ndarray:
    """Super-resolve a window that has no tile around it (a BigEarthNet v1 patch), with a margin
    of the method's halo on every side: taken from ``neighbours`` ({(dy, dx): (b10, b20, b60)}
    of the adjacent windows of the same tile, same shapes) where one exists, else mirrored
    (``symmetric``: the edge pixel repeats, so for bilinear an all-mirrored margin is the same
    as clamping). The margin is cut off again afterwards."""
    h = up.halo
    neighbours = {k: v for k, v in (neighbours or {}).items() if v is not None}
    cubes = []
    for k, (cube, m) in enumerate(((b10, 6 * h), (b20, 3 * h), (b60, h))):
        cubes.append(None if cube is None else _with_margin(cube, {d: v[k] for d, v in neighbours.items()}, m))
    # only the patch is used: the method computes it alone, the margin being context (DSen2: its
    # 42 px margin made the window 2.9x the patch, and the networks ran over all of it; measured
    # 4-6x faster per patch, bit-identical, benchmarks/scale.py)
    side = 2 * b20.shape[1]
    res = up(*cubes, region=(6 * h, side + 6 * h, 6 * h, side + 6 * h))
    return np.ascontiguousarray(res[:, 6 * h:-6 * h, 6 * h:-6 * h])


def to_uint16(a: np.ndarray) -> np.ndarray:
    """Round half to even and saturate; in place on ``a`` (torch: on every core)."""
    import torch
    t = torch.from_numpy(a)
    t.round_().clamp_(0, 65535)
    return t.to(torch.uint16).numpy()


def assemble_super(native_10m: np.ndarray, sr: np.ndarray) -> np.ndarray:
    """data_super (12, H, W) uint16 from the native 10 m bands and the super-resolved rest."""
    out = np.empty((len(BANDS_SUPER), *native_10m.shape[1:]), np.uint16)
    out[[BANDS_SUPER.index(b) for b in BANDS_10M]] = native_10m
    out[[BANDS_SUPER.index(b) for b in BANDS_SR]] = to_uint16(sr)
    return out
