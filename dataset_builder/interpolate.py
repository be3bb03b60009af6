"""The interpolating upsamplers (phase-exact bilinear, Keys bicubic) and the protocol every
super-resolution method implements; the registry of methods is in ``upsample.py``."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from bigearth.record import BANDS_20M, BANDS_60M, BANDS_SR


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
    """Upsample ``x`` by the integer ``f`` along ``dim`` into ``out``.

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
    """(..., h, w) -> (..., h*f, w*f) into ``out`` with a 1-D interpolation: rows, then columns.
    Leading dimensions (bands) go through together: per band, a patch's few thousand pixels
    cost less than the calls."""
    rows, cols = x.ndim - 2, x.ndim - 1
    tmp = torch.empty((*x.shape[:rows], x.shape[rows] * f, x.shape[cols]), dtype=x.dtype)
    axis_fn(x, f, rows, tmp)
    axis_fn(tmp, f, cols, out)


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
                src = torch.from_numpy(np.ascontiguousarray(cube, np.float32))
                res = torch.empty((len(names), h, w), dtype=torch.float32)
                _separable(self.axis, src, f, res)
                o[[BANDS_SR.index(n) for n in names]] = res
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
