"""Reading multi-resolution Sentinel-2 images that are not products: the MATLAB v7.3 (HDF5)
layout of the DSen2 authors' sample crops, ``im10`` (4 bands), ``im20`` (6) and ``im60`` (2).

MATLAB writes column-major, so each band's spatial axes arrive transposed; h5py reads the file
as plain data (no pickled objects are involved).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M

from bigearth.errors import InputError

KEYS = {"im10": (BANDS_10M, 1), "im20": (BANDS_20M, 2), "im60": (BANDS_60M, 6)}


def read_mat(path) -> dict[str, np.ndarray]:
    """``{"im10": (4,H,W), "im20": (6,H/2,W/2), "im60": (2,H/6,W/6)}`` float32, band-row-column.

    Raises InputError naming the file when a dataset is missing or the three grids disagree.
    """
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(path, f"not an HDF5 / MATLAB v7.3 file ({e})") from None
    out = {}
    with f:
        for key, (bands, _) in KEYS.items():
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise InputError(path, f"no dataset {key!r} (expected im10, im20, im60)")
            a = np.asarray(f[key][()], np.float32)
            if a.ndim != 3 or a.shape[0] != len(bands):
                raise InputError(path, f"{key} has shape {a.shape}, expected ({len(bands)}, rows, cols)")
            # MATLAB's attribute marks files it wrote; an HDF5 file from elsewhere is row-major already
            matlab = "MATLAB_class" in f[key].attrs
            out[key] = np.ascontiguousarray(a.transpose(0, 2, 1) if matlab else a)
    h, w = out["im10"].shape[1:]
    for key, (_, s) in KEYS.items():
        if out[key].shape[1:] != (h // s, w // s) or h % 6 or w % 6:
            raise InputError(path, f"{key} is {out[key].shape[1:]}, which does not match im10 {h}x{w} at 1/{s} "
                                   "(sides must be multiples of 6)")
    return out
