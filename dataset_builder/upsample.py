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

from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, BANDS_SUPER

BANDS_SR = tuple(b for b in BANDS_SUPER if b not in BANDS_10M)  # B01 B05 B06 B07 B8A B09 B11 B12


class Upsampler(Protocol):
    name: str
    halo: int  # context needed on each side, in 60 m pixels
    needs_10m: bool  # whether __call__ uses b10 (else it is given None)

    def __call__(self, b10: np.ndarray | None, b20: np.ndarray, b60: np.ndarray) -> np.ndarray:
        """(4,H,W), (6,H/2,W/2), (2,H/6,W/6) float32 -> (8,H,W) float32 in BANDS_SR order."""


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


def bilinear(x: torch.Tensor, f: int, out: torch.Tensor) -> None:
    """(h, w) -> (h*f, w*f) into ``out``: rows, then columns."""
    tmp = torch.empty((x.shape[0] * f, x.shape[1]), dtype=x.dtype)
    _bilinear_axis(x, f, 0, tmp)
    _bilinear_axis(tmp, f, 1, out)


class Bilinear:
    """Bilinear interpolation on pixel centres, edges clamped: what GDAL's bilinear upsampling
    computes; kept in float, rounded once at the end."""

    name = "bilinear"
    halo = 1
    needs_10m = False

    def __call__(self, b10, b20, b60):
        h, w = b20.shape[1] * 2, b20.shape[2] * 2
        out = np.empty((len(BANDS_SR), h, w), np.float32)
        o = torch.from_numpy(out)
        with torch.no_grad():
            for cube, names, f in ((b20, BANDS_20M, 2), (b60, BANDS_60M, 6)):
                for k, name in enumerate(names):
                    bilinear(torch.from_numpy(np.ascontiguousarray(cube[k])), f, o[BANDS_SR.index(name)])
        return out


_REGISTRY: dict[str, Callable[[], Upsampler]] = {"bilinear": Bilinear}


def register(name: str, factory: Callable[[], Upsampler]) -> None:
    _REGISTRY[name] = factory


def get(name: str) -> Upsampler:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown upsampling method {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def available() -> list[str]:
    return sorted(_REGISTRY)


def upsample_rows(up: Upsampler, bands: dict, convert, row0: int, row1: int) -> np.ndarray:
    """Super-resolve 10 m rows [row0, row1) of a tile with ``up``, using its halo for context:
    (8, row1 - row0, W) float32 in BANDS_SR order.

    ``bands`` maps band id -> full native-resolution uint16 array; ``convert(band, arr)`` turns
    DNs into the stored float convention. row0 and row1 must be multiples of 6.
    """
    size = bands[BANDS_10M[0]].shape[0]
    h = 6 * up.halo
    a, b = max(0, row0 - h), min(size, row1 + h)
    b10 = np.stack([convert(n, bands[n][a:b]) for n in BANDS_10M]) if up.needs_10m else None
    b20 = np.stack([convert(n, bands[n][a // 2:b // 2]) for n in BANDS_20M])
    b60 = np.stack([convert(n, bands[n][a // 6:b // 6]) for n in BANDS_60M])
    out = up(b10, b20, b60)
    return out[:, row0 - a:row1 - a]


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
