"""How a patch is shown: one contrast stretch for every picture the package draws, so the same
patch looks the same in ``BigEarthSR.plot`` and ``bigearth-sr show`` (numpy only; the figures
themselves are drawn above the core)."""
from __future__ import annotations

import numpy as np

# the percentiles an image is stretched between: BigEarthNet's reflectances are skewed by bright
# clouds, water and shadows, so a fixed scale makes most patches too dark or too pale
LOW, HIGH = 2, 98


def stretch_limits(bands: np.ndarray) -> tuple[float, float]:
    """(low, high) reflectance of a (bands, H, W) cube: its LOW and HIGH percentiles over all bands."""
    lo, hi = np.percentile(np.asarray(bands, np.float32), (LOW, HIGH))
    return float(lo), float(max(hi, lo + 1.0))


def rgb_image(bands: np.ndarray, limits: tuple[float, float] | None = None) -> np.ndarray:
    """A (3, H, W) cube (red, green, blue) as an (H, W, 3) float image in [0, 1], stretched
    between ``limits`` (default: the cube's own ``stretch_limits``; one pair shared by all three
    bands, so the colours keep their balance)."""
    bands = np.asarray(bands, np.float32)
    if bands.ndim != 3 or bands.shape[0] != 3:
        raise ValueError(f"an RGB cube is (3, H, W), got shape {bands.shape}")
    lo, hi = limits if limits is not None else stretch_limits(bands)
    return np.clip((np.moveaxis(bands, 0, -1) - lo) / (hi - lo), 0.0, 1.0)
