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


def scene_record(up: Upsampler) -> dict:
    """What a task's result records of its scene's upsampler (``for_scene``'s): the adaptation's
    report, if it adapted, and how many values the guard's range bound held (DSen2)."""
    out = {"sr_adapted": up.adaptation} if getattr(up, "adaptation", None) else {}
    if hasattr(up, "held_px"):
        out["sr_held_px"] = up.held_px
    return out


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
    """(C, H, W) -> (C, H+2m, W+2m): the m pixels around ``center`` (a patch, or a block of them)
    from its neighbours ``nb`` ({(dy, dx): array or None}: the sides (0, +-1) as high as the
    centre, (+-1, 0) as wide, the corners), a missing one replaced by the mirror image of what
    lies next to it, row band by row band, so that at the edge of a rectangular mosaic every
    patch sees what a whole-mosaic run with mirrored edges would see, and a block sees what each
    of its patches would see with its own neighbours."""
    height, width = center.shape[1:]
    if m > min(height, width, *(a.shape[k] for a in nb.values() if a is not None for k in (1, 2))):
        raise ValueError(f"a margin of {m} px is wider than the {height} x {width} px window or a neighbour of it")

    def band(mid, left, right):  # one row band, widened by m columns on each side
        lpart = left[:, :, left.shape[2] - m:] if left is not None else np.flip(mid[:, :, :m], 2)
        rpart = right[:, :, :m] if right is not None else np.flip(mid[:, :, mid.shape[2] - m:], 2)
        return np.concatenate([lpart, mid, rpart], axis=2)

    middle = band(center, nb.get((0, -1)), nb.get((0, 1)))
    rows = []
    for dy in (-1, 1):
        c = nb.get((dy, 0))
        if c is not None:
            sl = slice(c.shape[1] - m, c.shape[1]) if dy < 0 else slice(0, m)
            side = [nb.get((dy, dx)) for dx in (-1, 1)]
            rows.append(band(c[:, sl], *[None if s is None else s[:, sl] for s in side]))
        else:  # mirror the middle band's rows next to this side
            rows.append(np.flip(middle[:, :m] if dy < 0 else middle[:, height - m:], 1))
    return np.concatenate([rows[0], middle, rows[1]], axis=1)


def upsample_with_context(up: Upsampler, b10: np.ndarray | None, b20: np.ndarray, b60: np.ndarray,
                          neighbours: dict | None = None) -> np.ndarray:
    """Super-resolve a window that has no tile around it (a BigEarthNet v1 patch, or a block of
    adjacent ones), with a margin of the method's halo on every side: taken from ``neighbours``
    ({(dy, dx): (b10, b20, b60)} of the adjacent windows of the same tile: sides as long as the
    window's side, corners) where one exists, else mirrored (``symmetric``: the edge pixel repeats,
    so for bilinear an all-mirrored margin is the same as clamping). The margin is cut off again
    afterwards."""
    h = up.halo
    neighbours = {k: v for k, v in (neighbours or {}).items() if v is not None}
    cubes = []
    for k, (cube, m) in enumerate(((b10, 6 * h), (b20, 3 * h), (b60, h))):
        cubes.append(None if cube is None else _with_margin(cube, {d: v[k] for d, v in neighbours.items()}, m))
    # only the window is used: the method computes it alone, the margin being context (DSen2: its
    # 42 px margin made the window 2.9x the patch, and the networks ran over all of it; measured
    # 4-6x faster per patch, bit-identical, benchmarks/scale.py)
    rows, cols = 2 * b20.shape[1], 2 * b20.shape[2]
    res = up(*cubes, region=(6 * h, rows + 6 * h, 6 * h, cols + 6 * h))
    return np.ascontiguousarray(res[:, 6 * h:-6 * h, 6 * h:-6 * h])


def _joined(windows: list, axis: int):
    """(b10, b20, b60) of adjacent windows joined along ``axis`` (1: a column, 2: a row); None when
    every one is missing. A side with some windows missing cannot be joined (the block is chosen
    so that it never has one)."""
    if all(w is None for w in windows):
        return None
    if any(w is None for w in windows):
        raise ValueError("a block's side is partly missing: it cannot be mirrored as one")
    return tuple(None if windows[0][k] is None else np.concatenate([w[k] for w in windows], axis=axis) for k in range(3))


def upsample_block_of_patches(up: Upsampler, grid: list[list]) -> list[list[np.ndarray]]:
    """Super-resolve a block of adjacent patches in one call. ``grid`` is k + 2 rows of n + 2
    windows' (b10, b20, b60) or None: the k x n inner patches, present, and the ring around them,
    each of its four sides wholly present or wholly missing (mirrored), corners either. Returns
    the patches' outputs (8, p, p) by row, each what :func:`upsample_with_context` gives that patch
    with its own neighbours (bit for bit: every patch sees the same ``halo`` of context, and the
    method's reach lies inside it). The method runs once over the block and its reach instead of
    over each patch's own window: a 120 px patch's is 200 x 200 px for DSen2, 2.8x the patch; a
    block of 3 x 16 patches' 1.3x."""
    k, n = len(grid) - 2, len(grid[0]) - 2
    inner = [_joined(row[1:n + 1], 2) for row in grid[1:k + 1]]
    centre = _joined(inner, 1)
    ring = {(-1, 0): _joined(grid[0][1:n + 1], 2), (1, 0): _joined(grid[k + 1][1:n + 1], 2),
            (0, -1): _joined([row[0] for row in grid[1:k + 1]], 1), (0, 1): _joined([row[n + 1] for row in grid[1:k + 1]], 1),
            (-1, -1): grid[0][0], (-1, 1): grid[0][n + 1], (1, -1): grid[k + 1][0], (1, 1): grid[k + 1][n + 1]}
    res = upsample_with_context(up, *centre, ring)
    side = res.shape[1] // k
    return [[np.ascontiguousarray(res[:, j * side:(j + 1) * side, i * side:(i + 1) * side]) for i in range(n)]
            for j in range(k)]


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
