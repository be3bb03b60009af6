"""Super-resolution quality: RMSE, PSNR, SRE and SAM, per band and overall.

Images are reflectance x 10000, (bands, H, W). PSNR takes the peak as 10000 (reflectance 1).
SRE is the DSen2 paper's signal-to-reconstruction error, 10 log10(mean(x)^2 / MSE) in dB per band;
SAM the mean spectral angle between estimated and true pixel spectra, in degrees.
"""
from __future__ import annotations

import numpy as np

PEAK = 10000.0


def per_band(est: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    est, ref = est.astype(np.float64), ref.astype(np.float64)
    mse = ((est - ref) ** 2).mean(axis=(1, 2))
    mean = ref.mean(axis=(1, 2))
    with np.errstate(divide="ignore"):
        return {"rmse": np.sqrt(mse), "psnr": 10 * np.log10(PEAK ** 2 / mse), "sre": 10 * np.log10(mean ** 2 / mse)}


def sam(est: np.ndarray, ref: np.ndarray) -> float:
    """Mean spectral angle (degrees) over pixels where both spectra are non-zero."""
    e = est.reshape(est.shape[0], -1).astype(np.float64)
    r = ref.reshape(ref.shape[0], -1).astype(np.float64)
    ne, nr = np.linalg.norm(e, axis=0), np.linalg.norm(r, axis=0)
    ok = (ne > 0) & (nr > 0)
    cos = np.clip((e[:, ok] * r[:, ok]).sum(0) / (ne[ok] * nr[ok]), -1, 1)
    return float(np.degrees(np.arccos(cos)).mean())


def summary(est: np.ndarray, ref: np.ndarray, bands) -> dict:
    """{"bands": {band: {rmse, psnr, sre}}, "overall": {rmse, psnr, sre, sam}}."""
    pb = per_band(est, ref)
    mse_all = float(((est.astype(np.float64) - ref) ** 2).mean())
    return {
        "bands": {b: {k: float(v[i]) for k, v in pb.items()} for i, b in enumerate(bands)},
        "overall": {"rmse": mse_all ** 0.5, "psnr": float(10 * np.log10(PEAK ** 2 / mse_all)),
                    "sre": float(pb["sre"].mean()), "sam": sam(est, ref)},
    }
