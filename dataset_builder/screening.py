"""Screening patches by the Level-2A scene classification (SCL)."""
from __future__ import annotations

import numpy as np

# Reasons in priority order: a patch dropped for several is counted under the first.
SCL_CLASSES: dict[str, tuple[int, ...]] = {
    "nodata": (0, 1),  # no data, saturated or defective
    "cloud": (8, 9),  # cloud medium and high probability
    "cirrus": (10,),
    "shadow": (3,),  # cloud shadow
    "snow": (11,),
}
# Largest tolerated share of a patch's SCL pixels for each reason.
DEFAULT_THRESHOLDS = {"nodata": 0.0, "cloud": 0.01, "cirrus": 0.05, "shadow": 0.01, "snow": 0.01}


def scl_fractions(scl_strip: np.ndarray, patch_px: int) -> dict[str, np.ndarray]:
    """Per-patch share of each SCL group for a strip of patches (rows == patch_px)."""
    rows, width = scl_strip.shape
    ncols = width // patch_px
    blocks = scl_strip[:, : ncols * patch_px].reshape(rows, ncols, patch_px)
    col = np.broadcast_to(np.arange(ncols)[None, :, None], blocks.shape)
    counts = np.bincount((col * 256 + blocks).ravel(), minlength=ncols * 256).reshape(ncols, 256)
    n = rows * patch_px
    return {k: counts[:, list(v)].sum(axis=1) / n for k, v in SCL_CLASSES.items()}


def drop_reasons(fractions: dict[str, np.ndarray], thresholds: dict[str, float]) -> list[str | None]:
    """The reason each patch is dropped for, or None to keep it."""
    ncols = len(next(iter(fractions.values())))
    reasons: list[str | None] = [None] * ncols
    for key in SCL_CLASSES:
        over = fractions[key] > thresholds[key]
        for i in np.flatnonzero(over):
            if reasons[i] is None:
                reasons[i] = key
    return reasons
