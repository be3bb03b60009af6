"""Super-resolution of the 20 m and 60 m bands to 10 m: a pluggable step.

An upsampler maps the native cubes of a window to the 8 bands that are coarser than 10 m, at
10 m (``BANDS_SR``, in spectral order); the four 10 m bands enter ``data_super`` untouched. It
declares the context (``halo``, in 60 m pixels) it needs around a window, so the builder can
run it strip by strip and still get exactly what a whole-tile run gives: no seams at patch or
strip borders, and whether it needs the 10 m bands as guidance (``needs_10m``, as DSen2 does).
New methods register with :func:`register`.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch

from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, BANDS_SUPER, PATCH_PX

BANDS_SR = tuple(b for b in BANDS_SUPER if b not in BANDS_10M)  # B01 B05 B06 B07 B8A B09 B11 B12


class Upsampler(Protocol):
    name: str
    halo: int  # context needed on each side, in 60 m pixels
    needs_10m: bool  # whether __call__ uses b10 (else it is given None)

    def __call__(self, b10: np.ndarray | None, b20: np.ndarray, b60: np.ndarray, region=None) -> np.ndarray:
        """(4,H,W), (6,H/2,W/2), (2,H/6,W/6) float32 -> (8,H,W) float32 in BANDS_SR order.

        ``region`` (r0, r1, c0, c1), in 10 m pixels, is the part of the output that will be used;
        a method may leave the rest uncomputed (a network does; interpolation computes it all)."""


def _phase_weights(f: int) -> list[float]:
    # output pixel f*k + j lies at source coordinate k + (j + 0.5) / f - 0.5
    return [(j + 0.5) / f - 0.5 for j in range(f)]


def _bilinear_axis(x: torch.Tensor, f: int, dim: int, out: torch.Tensor) -> None:
    """Upsample ``x`` by the integer ``f`` along ``dim`` (0 or 1) into ``out``.

    The two weights of an output pixel depend on its phase j alone, and each pixel is one
    multiply, one multiply and one add/subtract: the same arithmetic wherever a window starts,
    so strip-wise results are bit-identical to whole-tile ones (``F.interpolate`` derives
    coordinates in float32 from the absolute index and is not). Edges are clamped.
    """
    n = x.shape[dim]
    xp = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
    prev, here, nxt = xp.narrow(dim, 0, n), xp.narrow(dim, 1, n), xp.narrow(dim, 2, n)
    shape = list(x.shape)
    shape.insert(dim + 1, f)
    phases = out.view(shape)
    for j, w in enumerate(_phase_weights(f)):
        dst = phases.select(dim + 1, j)
        if w < 0:
            torch.mul(here, 1 + w, out=dst)
            dst.add_(prev * -w)
        else:
            torch.mul(here, 1 - w, out=dst)
            dst.add_(nxt * w)


def _separable(axis_fn, x: torch.Tensor, f: int, out: torch.Tensor) -> None:
    """(h, w) -> (h*f, w*f) into ``out`` with a 1-D interpolation: rows, then columns."""
    tmp = torch.empty((x.shape[0] * f, x.shape[1]), dtype=x.dtype)
    axis_fn(x, f, 0, tmp)
    axis_fn(tmp, f, 1, out)


def bilinear(x: torch.Tensor, f: int, out: torch.Tensor) -> None:
    """(h, w) -> (h*f, w*f) into ``out``."""
    _separable(_bilinear_axis, x, f, out)


class Bilinear:
    """Bilinear interpolation on pixel centres, edges clamped: what GDAL's bilinear upsampling
    computes; kept in float, rounded once at the end."""

    name = "bilinear"
    halo = 1
    needs_10m = False
    axis = staticmethod(_bilinear_axis)  # the 1-D interpolation, applied to rows then columns

    def __call__(self, b10, b20, b60, region=None):
        h, w = b20.shape[1] * 2, b20.shape[2] * 2
        out = np.empty((len(BANDS_SR), h, w), np.float32)
        o = torch.from_numpy(out)
        with torch.no_grad():
            for cube, names, f in ((b20, BANDS_20M, 2), (b60, BANDS_60M, 6)):
                for k, name in enumerate(names):
                    src = torch.from_numpy(np.ascontiguousarray(cube[k], np.float32))
                    _separable(self.axis, src, f, o[BANDS_SR.index(name)])
        return out


def _keys(t: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel (a = -0.5: GDAL's cubic, MATLAB's imresize)."""
    t = abs(t)
    if t <= 1:
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
    if t < 2:
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
    return 0.0


def _bicubic_axis(x: torch.Tensor, f: int, dim: int, out: torch.Tensor) -> None:
    """Like :func:`_bilinear_axis` with four taps of Keys' kernel; edges replicated."""
    n = x.shape[dim]
    xp = torch.cat([x.narrow(dim, 0, 1)] * 2 + [x] + [x.narrow(dim, n - 1, 1)] * 2, dim)
    shape = list(x.shape)
    shape.insert(dim + 1, f)
    phases = out.view(shape)
    for j, t in enumerate(_phase_weights(f)):
        base = -1 if t < 0 else 0  # the source pixel left of the output pixel's centre
        frac = t - base
        dst = phases.select(dim + 1, j)
        dst.zero_()
        for tap in (-1, 0, 1, 2):
            dst.add_(xp.narrow(dim, 2 + base + tap, n), alpha=_keys(tap - frac))


class Bicubic(Bilinear):
    """Cubic convolution (Keys, a = -0.5) on pixel centres, edges replicated; the baseline the
    DSen2 paper compares with."""

    name = "bicubic"
    halo = 2  # four taps: two 60 m pixels on each side
    axis = staticmethod(_bicubic_axis)


def _dsen2(**options) -> Upsampler:
    from .sr.infer import DSen2  # torch networks and weights load only when asked for
    return DSen2(**options)


_REGISTRY: dict[str, Callable[..., Upsampler]] = {"bilinear": Bilinear, "bicubic": Bicubic, "dsen2": _dsen2}


def register(name: str, factory: Callable[..., Upsampler]) -> None:
    _REGISTRY[name] = factory


def get(name: str, **options) -> Upsampler:
    """The upsampler registered as ``name``.

    Args:
        name: ``bilinear``, ``bicubic``, ``dsen2`` or a name given to :func:`register`.
        **options: passed to the method's factory; ``dsen2`` takes ``weights`` (a bundle path, two
            Keras files joined by a comma, or None for the shipped default), ``device``
            (``cpu``/``cuda``) and ``precision`` (``auto``/``fp32``/``bf16``/``fp16``).

    Returns:
        An :class:`Upsampler`: ``up(b10, b20, b60)`` maps (4,H,W), (6,H/2,W/2), (2,H/6,W/6)
        float32 reflectance x 10000 to the 8 coarser bands at 10 m, (8,H,W), in ``BANDS_SR`` order.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown upsampling method {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**options)


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
    res = up(*cubes)
    return np.ascontiguousarray(res[:, 6 * h:-6 * h, 6 * h:-6 * h])


def to_uint16(a: np.ndarray) -> np.ndarray:
    """Round half to even and saturate; in place on ``a`` (torch: on every core)."""
    t = torch.from_numpy(a)
    t.round_().clamp_(0, 65535)
    return t.to(torch.uint16).numpy()


def assemble_super(native_10m: np.ndarray, sr: np.ndarray) -> np.ndarray:
    """data_super (12, H, W) uint16 from the native 10 m bands and the super-resolved rest."""
    out = np.empty((len(BANDS_SUPER), *native_10m.shape[1:]), np.uint16)
    out[[BANDS_SUPER.index(b) for b in BANDS_10M]] = native_10m
    out[[BANDS_SUPER.index(b) for b in BANDS_SR]] = to_uint16(sr)
    return out
