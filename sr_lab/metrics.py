"""Super-resolution quality: RMSE, SRE and SAM, per band and pooled over any number of images.

Images are reflectance x 10000, (bands, H, W). PSNR takes the peak as 10000 (reflectance 1). SRE is the DSen2 paper's signal-to-reconstruction
error, 10 log10(mean(x)^2 / MSE) in dB per band; SAM the mean spectral angle between estimated
and true pixel spectra, in degrees. Figures pool through sums (:func:`sums`, :func:`add`), so
the images of a scene, of many scenes, or of several runs combine exactly (:func:`figures`).
"""
from __future__ import annotations

import numpy as np

PEAK = 10000.0


def angles(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Spectral angle (degrees) per pixel where both spectra are non-zero, (H, W) with NaN elsewhere."""
    e, r = est.astype(np.float64), ref.astype(np.float64)
    ne, nr = np.sqrt((e * e).sum(0)), np.sqrt((r * r).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip((e * r).sum(0) / (ne * nr), -1, 1)
    return np.where((ne > 0) & (nr > 0), np.degrees(np.arccos(cos)), np.nan)


def sam(est: np.ndarray, ref: np.ndarray) -> float:
    """Mean spectral angle (degrees) over pixels where both spectra are non-zero."""
    return float(np.nanmean(angles(est, ref)))


def sums(est: np.ndarray, ref: np.ndarray) -> dict:
    """What pools: per band the squared error and reference sums, the angles, the pixel count."""
    d = est.astype(np.float64) - ref
    ang = angles(est, ref)
    return {"sse": (d * d).sum(axis=(1, 2)).tolist(), "ref": ref.astype(np.float64).sum(axis=(1, 2)).tolist(),
            "sam": float(np.nansum(ang)), "sam_n": int(np.isfinite(ang).sum()), "n": int(ref.shape[1] * ref.shape[2])}


def add(a: dict | None, b: dict) -> dict:
    """Two :func:`sums` as one (``a`` None: a copy of ``b``)."""
    if a is None:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in b.items()}
    return {k: [x + y for x, y in zip(a[k], b[k])] if isinstance(b[k], list) else a[k] + b[k] for k in b}


def figures(s: dict, bands) -> dict:
    """Pooled :func:`sums` as figures: RMSE, PSNR, SRE (dB, the bands' mean) and SAM (degrees)
    overall, and RMSE and SRE per band."""
    sse, ref, n = np.array(s["sse"]), np.array(s["ref"]), s["n"]
    mse = sse / n
    with np.errstate(divide="ignore"):
        sre = 10 * np.log10((ref / n) ** 2 / mse)
        psnr = float(10 * np.log10(PEAK ** 2 / mse.mean()))
    return {"rmse": float(np.sqrt(mse.mean())), "psnr": psnr, "sre": float(sre.mean()), "sam": s["sam"] / max(s["sam_n"], 1),
            "bands": {b: {"rmse": float(np.sqrt(m)), "sre": float(e)} for b, m, e in zip(bands, mse, sre)}}
