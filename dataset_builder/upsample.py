"""Super-resolution of the 20 m and 60 m bands to 10 m: a pluggable step.

An upsampler maps the three native cubes of a window to the 12 bands at 10 m (BANDS_SUPER
order). It declares the context (``halo``, in 60 m pixels) it needs around a window, so the
builder can run it strip by strip and still get exactly what a whole-tile run gives: no seams
at patch or strip borders. New methods register with :func:`register`.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch

from bigearth_sr.record import BANDS_10M, BANDS_20M, BANDS_60M, BANDS_SUPER

_ORDER = [(BANDS_10M + BANDS_20M + BANDS_60M).index(b) for b in BANDS_SUPER]


class Upsampler(Protocol):
    name: str
    halo: int  # context needed on each side, in 60 m pixels

    def __call__(self, b10: np.ndarray, b20: np.ndarray, b60: np.ndarray) -> np.ndarray:
        """(4,H,W), (6,H/2,W/2), (2,H/6,W/6) float32 -> (12,H,W) float32 in BANDS_SUPER order."""


def _bilinear_1d(x: torch.Tensor, f: int, dim: int) -> torch.Tensor:
    """Upsample by the integer ``f`` along ``dim`` (pixel centres aligned, edges clamped).

    Output pixel f*k + j lies at source coordinate k + (j + 0.5) / f - 0.5, so its two weights
    depend on the phase j alone: every output pixel is computed by the same arithmetic wherever
    the window starts, which makes strip-wise results bit-identical to whole-tile results
    (``F.interpolate`` derives coordinates in float32 from the absolute index and is not).
    """
    n = x.shape[dim]
    xp = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
    prev, here, nxt = xp.narrow(dim, 0, n), xp.narrow(dim, 1, n), xp.narrow(dim, 2, n)
    phases = []
    for j in range(f):
        w = (j + 0.5) / f - 0.5
        phases.append(here * (1 + w) - prev * w if w < 0 else here * (1 - w) + nxt * w)
    out = torch.stack(phases, dim + 1)
    shape = list(x.shape)
    shape[dim] = n * f
    return out.reshape(shape)


class Bilinear:
    """Bilinear interpolation on pixel centres, edges clamped: what GDAL's bilinear upsampling
    computes; kept in float, rounded once at the end."""

    name = "bilinear"
    halo = 1

    def __call__(self, b10, b20, b60):
        with torch.no_grad():
            def up(a, f):
                t = torch.from_numpy(np.ascontiguousarray(a))
                return _bilinear_1d(_bilinear_1d(t, f, 1), f, 2)
            stack = torch.cat([torch.from_numpy(b10), up(b20, 2), up(b60, 6)])
            return stack[_ORDER].numpy()


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
    """Super-resolve 10 m rows [row0, row1) of a tile with ``up``, using its halo for context.

    ``bands`` maps band id -> full native-resolution uint16 array; ``convert(band, arr)`` turns
    DNs into the stored float convention. row0 and row1 must be multiples of 6.
    """
    size = bands[BANDS_10M[0]].shape[0]
    h = 6 * up.halo
    a, b = max(0, row0 - h), min(size, row1 + h)
    b10 = np.stack([convert(n, bands[n][a:b]) for n in BANDS_10M])
    b20 = np.stack([convert(n, bands[n][a // 2:b // 2]) for n in BANDS_20M])
    b60 = np.stack([convert(n, bands[n][a // 6:b // 6]) for n in BANDS_60M])
    out = up(b10, b20, b60)
    return out[:, row0 - a:row1 - a]


def to_uint16(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 65535).astype(np.uint16)
