"""Wald's protocol, quality metrics and the cross-band detail statistic
(sr_lab/wald.py, metrics.py, crop.py; dataset_builder/sr/detail.py)."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from bigearth.errors import InputError
from dataset_builder.sr import detail
from sr_lab import metrics, wald
from sr_lab.crop import read_mat

from .conftest import fixtures_dir

CROP = "sentinel2-crops/S2A_MSIL1C_20170527_T33UUB.mat"


def test_degrade_is_blur_then_block_mean():
    a = np.random.default_rng(0).uniform(0, 1000, (2, 12, 18)).astype(np.float32)
    got = wald.degrade(a, ("B05", "B06"), 3)
    blurred = gaussian_filter(a[1].astype(np.float64), 1 / 3, mode="reflect")
    ref = np.array([[blurred[3 * i:3 * i + 3, 3 * j:3 * j + 3].mean() for j in range(6)] for i in range(4)])
    np.testing.assert_allclose(got[1], ref, rtol=1e-5)


@pytest.mark.parametrize("band, s", [("B02", 2), ("B11", 2), ("B01", 6)])
def test_mtf_gaussian_has_the_published_gain_at_nyquist(band, s):
    sig = wald.sigma(band, s, "mtf")
    # a sampled Gaussian's transfer at the coarse Nyquist f = 1/(2s) cycles per pixel, computed directly
    x = np.arange(-40, 41)
    k = np.exp(-x ** 2 / (2 * sig ** 2))
    k /= k.sum()
    gain = abs((k * np.exp(-2j * math.pi * x / (2 * s))).sum())
    assert gain == pytest.approx(wald.MTF_NYQUIST[band], abs=2e-3)


def test_pair_shapes():
    sc = {"im10": np.ones((4, 120, 84), np.float32), "im20": np.ones((6, 60, 42), np.float32),
          "im60": np.ones((2, 20, 14), np.float32)}
    low, target = wald.pair(sc, 6)
    assert low["im10"].shape == (4, 18, 12) and low["im60"].shape == (2, 3, 2) and target.shape == (2, 18, 12)
    low, target = wald.pair(sc, 2)
    assert low["im10"].shape == (4, 60, 42) and low["im20"].shape == (6, 30, 21) and target.shape == (6, 60, 42)


def test_metrics_against_direct_formulas():
    rng = np.random.default_rng(1)
    ref = rng.uniform(100, 3000, (3, 10, 10))
    est = ref + rng.normal(0, 50, ref.shape)
    s = metrics.figures(metrics.sums(est, ref), ("B05", "B06", "B07"))
    e = (est[1] - ref[1]).ravel()
    assert s["bands"]["B06"]["rmse"] == pytest.approx(np.sqrt((e ** 2).mean()))
    assert s["bands"]["B06"]["sre"] == pytest.approx(10 * np.log10(ref[1].mean() ** 2 / (e ** 2).mean()))
    assert s["psnr"] == pytest.approx(20 * np.log10(10000 / np.sqrt(((est - ref) ** 2).mean())))
    # pooling two halves through their sums gives the whole image's figures
    halves = metrics.add(metrics.sums(est[:, :5], ref[:, :5]), metrics.sums(est[:, 5:], ref[:, 5:]))
    assert metrics.figures(halves, ("B05", "B06", "B07"))["rmse"] == pytest.approx(s["rmse"])
    v, w = est[:, 3, 4], ref[:, 3, 4]
    one = np.degrees(np.arccos(v @ w / np.linalg.norm(v) / np.linalg.norm(w)))
    assert 0 < one < 10 and metrics.sam(ref, ref) == pytest.approx(0, abs=1e-5)
    assert metrics.sam(2 * ref, ref) == pytest.approx(0, abs=1e-5)  # angles ignore brightness


def test_detail_correlation_is_one_for_shared_detail_and_zero_for_independent():
    rng = np.random.default_rng(2)
    fine = rng.normal(size=(120, 120))
    coarse = detail.block_mean(fine, 2) * 3 + 7
    assert detail.detail_correlation(fine, coarse) == pytest.approx(1, abs=1e-6)
    assert abs(detail.detail_correlation(fine, rng.normal(size=(60, 60)))) < 0.1


def test_synthetic_detail_statistics_in_the_real_range():
    """The generator's bands share detail about as much as real Sentinel-2 bands do (issue 1b)."""
    from bigearth.record import BAND_RESOLUTION, BANDS_SUPER
    from dataset_builder.synth import SynthConfig, render_scene
    truth, _, _ = render_scene(SynthConfig(tile_size_m=6000, cloud_cover=0, snow_cover=0, seed=1))
    bands = {b: truth[i] if BAND_RESOLUTION[b] == 10 else detail.block_mean(truth[i], BAND_RESOLUTION[b] // 10)
             for i, b in enumerate(BANDS_SUPER)}
    t = detail.pair_table(bands)
    # real crops: B02~B01 0.76-0.78, B04~B05 0.72-0.78, B04~B12 0.39-0.80, B08~B8A 0.94-0.98
    assert 0.6 < t["B02~B01"] < 0.88 and 0.6 < t["B04~B05"] < 0.9
    assert 0.35 < t["B04~B12"] < 0.85 and 0.9 < t["B08~B8A"] < 0.995


def test_real_crop_reads_band_row_column():
    d = read_mat(fixtures_dir(CROP))
    assert d["im10"].shape == (4, 600, 600) and d["im20"].shape == (6, 300, 300) and d["im60"].shape == (2, 100, 100)
    # README: a 2x2 block mean of B08 correlates 0.996 with B8A in the right orientation
    b8 = detail.block_mean(d["im10"][3], 2).ravel()
    assert np.corrcoef(b8, d["im20"][3].ravel())[0, 1] > 0.99


def test_bad_mat_files(tmp_path):
    p = tmp_path / "x.mat"
    with h5py.File(p, "w") as f:
        f["im10"] = np.zeros((4, 12, 12))
        f["im20"] = np.zeros((6, 6, 6))
    with pytest.raises(InputError, match=r"x\.mat: no dataset 'im60'"):
        read_mat(p)
    with h5py.File(p, "a") as f:
        f["im60"] = np.zeros((2, 3, 3))
    with pytest.raises(InputError, match=r"x\.mat: im60 is \(3, 3\)"):
        read_mat(p)
    (tmp_path / "t.mat").write_text("MATLAB 5.0 MAT-file")
    with pytest.raises(InputError, match=r"t\.mat: not an HDF5 / MATLAB v7\.3 file"):
        read_mat(tmp_path / "t.mat")
