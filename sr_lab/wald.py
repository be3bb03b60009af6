"""Wald's protocol: degrade every band by the resolution ratio s, super-resolve, compare with
the original. What a network learns from, and what quality is measured on when no 10 m truth
of the coarse bands exists.

Degradation (the DSen2 authors' choice): a Gaussian blur of sigma = 1/s pixels, then the
s x s block mean. ``mtf`` instead matches each band's Gaussian to the sensor's modulation
transfer function: its gain at the coarse grid's Nyquist frequency is the band's published
Nyquist gain, so the degraded band looks as that band would from a sensor s times coarser.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M

from bigearth.errors import InputError
from dataset_builder.sr.detail import block_mean

from .flags import DEGRADATIONS

# Sentinel-2 MSI modulation transfer at Nyquist, per band
MTF_NYQUIST = {"B02": 0.275, "B03": 0.28, "B04": 0.25, "B08": 0.24, "B05": 0.365, "B06": 0.33, "B07": 0.34,
               "B8A": 0.32, "B11": 0.205, "B12": 0.235, "B01": 0.3175, "B09": 0.295}
MODES = DEGRADATIONS  # named where the flag is
CUBES = (("im10", BANDS_10M), ("im20", BANDS_20M), ("im60", BANDS_60M))


def sigma(band: str, s: int, mode: str = "gauss") -> float:
    """Blur (in pixels of the band's own grid) applied before the s x s block mean."""
    if mode == "gauss":
        return 1.0 / s
    if mode == "mtf":
        # a Gaussian's transfer is exp(-2 pi^2 sigma^2 f^2); the coarse Nyquist is f = 1 / (2 s)
        return s * math.sqrt(-2.0 * math.log(MTF_NYQUIST[band])) / math.pi
    raise ValueError(f"degradation mode must be one of {', '.join(MODES)}, not {mode!r}")


def degrade(cube: np.ndarray, bands, s: int, mode: str = "gauss") -> np.ndarray:
    """(C, H, W) -> (C, H/s, W/s): blur each band, then average s x s blocks."""
    out = [block_mean(gaussian_filter(cube[k].astype(np.float32), sigma(b, s, mode), mode="reflect"), s)
           for k, b in enumerate(bands)]
    return np.stack(out)


# The smallest degraded 10 m grid (pixels a side) the protocol is run on: the coarse input then
# has 12 (2x) or 8 (6x) pixels a side. Below that, most of the image lies within the reach of
# its reflected edges, and a 6x figure on a 120 px patch (3 px of 60 m input) measures the
# edges, not the method.
MIN_SIDE = {2: 24, 6: 48}


def min_side(ratio: int) -> int:
    return MIN_SIDE[ratio]


def degraded_side(shape, ratio: int) -> int:
    """The shorter side of a scene's degraded 10 m grid under the ``ratio`` protocol (after trimming)."""
    m = 36 if ratio == 6 else 12
    return (min(shape) - min(shape) % m) // ratio


def trim(scene: dict, multiple: int = 36) -> dict:
    """Crop the scene's 10 m grid to a multiple of ``multiple`` pixels (from the upper-left)."""
    h, w = scene["im10"].shape[1:]
    h, w = h - h % multiple, w - w % multiple
    return {k: scene[k][:, : h // f, : w // f] for k, f in (("im10", 1), ("im20", 2), ("im60", 6))}


def pair(scene: dict, ratio: int, mode: str = "gauss") -> tuple[dict, np.ndarray]:
    """Wald's pair for the ``ratio`` network: the degraded native cubes (the input, one grid level
    down) and the original coarse bands (the target, on the degraded 10 m grid)."""
    scene = trim(scene, 36 if ratio == 6 else 12)
    used = CUBES if ratio == 6 else CUBES[:2]  # the 2x network sees no 60 m band
    low = {k: degrade(scene[k], bands, ratio, mode) for k, bands in used}
    target = scene["im20"] if ratio == 2 else scene["im60"]
    return low, target


def read_scene(path) -> dict:
    """A multi-resolution scene, {im10, im20, im60} reflectance x 10000 float32, from a MAT/HDF5
    crop (im10/im20/im60) or a Level-2A product (.SAFE folder or .zip)."""
    from dataset_builder.safe import open_product, read_band, to_reflectance_dn
    from .crop import read_mat

    path = Path(path)
    if path.suffix.lower() in (".mat", ".h5", ".hdf5"):
        return read_mat(path)
    if path.suffix in (".SAFE", ".zip") or (path / "MTD_MSIL2A.xml").exists():
        p = open_product(path)
        return {k: np.stack([to_reflectance_dn(p, b, read_band(p, b)) for b in bands]).astype(np.float32)
                for k, bands in CUBES}
    raise InputError(path, "not a scene: expected a .mat/.h5 file with im10/im20/im60 or a Level-2A product")
