"""How much of a coarse band's spatial detail its 10 m neighbours predict.

Guided super-resolution (DSen2) works because the 10 m bands' detail predicts the coarser bands'
detail. The statistic: block-average the 10 m band to the coarse band's grid, take the high-pass
detail of both (the image minus its 3x3 box mean) and correlate. A synthetic scene should land in
the range real imagery gives, or a network trained on it learns a shortcut.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from bigearth.record import BAND_RESOLUTION

# (10 m band, coarse band): the pairs the synthetic generator is checked on
PAIRS = (("B02", "B01"), ("B04", "B05"), ("B04", "B12"), ("B08", "B8A"), ("B08", "B11"), ("B08", "B09"))


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks of the last two axes (which must be multiples of f)."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // f, f, w // f, f).mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


def highpass(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return a - uniform_filter(a, 3, mode="reflect")


def detail_correlation(fine: np.ndarray, coarse: np.ndarray) -> float:
    """Correlation of the high-pass detail of ``fine`` (block-averaged to ``coarse``'s grid) and ``coarse``."""
    f = fine.shape[0] // coarse.shape[0]
    a, b = highpass(block_mean(fine, f))[1:-1, 1:-1].ravel(), highpass(coarse)[1:-1, 1:-1].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def pair_table(bands: dict[str, np.ndarray], pairs=PAIRS) -> dict[str, float]:
    """``{"B02~B01": r, ...}`` for a scene given as band id -> native-resolution array."""
    out = {}
    for a, b in pairs:
        assert BAND_RESOLUTION[a] == 10
        out[f"{a}~{b}"] = round(detail_correlation(bands[a], bands[b]), 3)
    return out
