"""Do no harm: the consistency step and the guarded dsen2 upsampler (dataset_builder/sr/consistency.py, infer.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bigearth.record import BANDS_20M, BANDS_60M
from dataset_builder import upsample
from dataset_builder.sr import consistency
from dataset_builder.sr.infer import DSen2, detail_weight
from sr_lab import wald
from sr_lab.crop import read_mat

from .conftest import fixtures_dir

SEA = "sentinel2-patches/S2B_MSIL2A_20170930T095019_0_12.mat"  # calm sea: where the unguarded network failed


@pytest.mark.parametrize("s", [2, 6])
def test_degrade_is_the_protocols_operator(s):
    """The torch operator equals wald.degrade (scipy's gaussian_filter, reflect, then the block mean)."""
    y = np.random.default_rng(s).uniform(0, 5000, (3, 72, 108)).astype(np.float32)
    ref = wald.degrade(y, ["B05"] * 3, s)
    np.testing.assert_allclose(consistency.degrade(torch.from_numpy(y), s).numpy(), ref, rtol=0, atol=2e-3)


@pytest.mark.parametrize("s", [2, 6])
def test_adjoint(s):
    g = torch.Generator().manual_seed(s)
    y, v = torch.rand(2, 36, 48, generator=g, dtype=torch.float64), torch.rand(2, 36 // s, 48 // s, generator=g, dtype=torch.float64)
    lhs = float((consistency.degrade(y, s) * v).sum())
    assert lhs == pytest.approx(float((y * consistency.degrade_adjoint(v, s)).sum()), rel=1e-6)


def test_schedule_contracts_the_residual():
    """The step schedule's polynomial over the operator's spectrum: what the docstring states."""
    lam = consistency.spectrum(2)
    assert float(lam.min()) == pytest.approx(0.384, abs=0.01) and float(lam.max()) == pytest.approx(1.0, abs=1e-6)
    assert consistency.contraction(2) < 0.135
    assert consistency.contraction(6) < 1e-4  # sigma 1/6: one step of the block mean's inverse is exact


@pytest.mark.parametrize("s", [2, 6])
def test_projection_never_moves_away_from_a_consistent_truth(s):
    """Whatever the estimate, after the step it is no farther from any image that degrades to the input."""
    g = torch.Generator().manual_seed(10 + s)
    for _ in range(5):
        truth = torch.rand(3, 72, 72, generator=g) * 3000
        x = consistency.degrade(truth, s)
        est = truth + torch.randn(3, 72, 72, generator=g) * 200 + 150  # noise and a bias
        after = consistency.project(est, x, s)
        assert float((after - truth).norm()) <= float((est - truth).norm()) + 1e-3
        # and it gives the input back within the schedule's contraction
        assert consistency.residual(after, x, s) <= consistency.contraction(s) * consistency.residual(est, x, s) + 1e-2


def test_a_constant_image_comes_back_constant(tmp_path):
    """Every band constant: whatever the (random, untrained) networks add, the output is the input's value."""
    from .test_sr_model import tiny_bundle
    up = DSen2(str(tiny_bundle(tmp_path / "w.npz", blocks=3)))
    vals10, vals20, vals60 = [300, 500, 400, 2500], [900, 1800, 2100, 2300, 1500, 800], [250, 700]
    b10 = np.stack([np.full((72, 96), v, np.float32) for v in vals10])
    b20 = np.stack([np.full((36, 48), v, np.float32) for v in vals20])
    b60 = np.stack([np.full((12, 16), v, np.float32) for v in vals60])
    out = up(b10, b20, b60)
    for names, vals in ((BANDS_20M, vals20), (BANDS_60M, vals60)):
        for b, v in zip(names, vals):
            np.testing.assert_allclose(out[upsample.BANDS_SR.index(b)], v, rtol=0, atol=0.01)


def test_no_detail_in_the_10m_bands_adds_no_detail(tmp_path):
    """Flat 10 m bands guide nothing: the output is the consistent interpolation of the coarse bands alone,
    the same whatever the networks are."""
    from .test_sr_model import tiny_bundle
    rng = np.random.default_rng(3)
    b10 = np.stack([np.full((72, 96), v, np.float32) for v in (300, 500, 400, 2500)])
    b20 = rng.uniform(500, 3000, (6, 36, 48)).astype(np.float32)
    b60 = rng.uniform(200, 900, (2, 12, 16)).astype(np.float32)
    outs = [DSen2(str(tiny_bundle(tmp_path / f"w{i}.npz", seed=i)))(b10, b20, b60) for i in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    bil = upsample.get("bilinear")(None, b20, b60)
    for names, s, coarse in ((BANDS_20M, 2, b20), (BANDS_60M, 6, b60)):
        idx = [upsample.BANDS_SR.index(b) for b in names]
        want = consistency.project(torch.from_numpy(bil[idx]), torch.from_numpy(coarse), s).numpy()
        np.testing.assert_allclose(outs[0][idx], want, rtol=0, atol=1e-3)
    assert float(detail_weight(torch.from_numpy(b10)).max()) == 0.0


def _wald2(cubes, up):
    sc = wald.trim(cubes)
    low = {k: wald.degrade(sc[k], b, 2) for k, b in wald.CUBES}
    idx = [upsample.BANDS_SR.index(b) for b in BANDS_20M]
    est = up(low["im10"], low["im20"], low["im60"])[idx]
    return float(np.sqrt(((est.astype(np.float64) - sc["im20"]) ** 2).mean())), est, low


def test_real_dark_water_is_not_worse_than_bicubic():
    """The real sea patch the unguarded shipped network made worse than bicubic (10.1 DN against 6.4)."""
    cubes = read_mat(fixtures_dir(SEA))
    dsen2, est, low = _wald2(cubes, upsample.get("dsen2"))
    bicubic, _, _ = _wald2(cubes, upsample.get("bicubic"))
    assert dsen2 <= bicubic + 2.0, (dsen2, bicubic)
    # and the output gives its input back: the stated tolerance, 0.5 DN RMS
    assert consistency.residual(torch.from_numpy(est), torch.from_numpy(low["im20"]), 2) < 0.5


def test_synthetic_dark_water_is_not_worse_than_bicubic():
    """Calm water made here: dark, flat means with the sensor's noise, independent in every band,
    so the 10 m bands' texture says nothing about the coarse bands'."""
    rng = np.random.default_rng(7)
    means = {"im10": [450, 350, 180, 90], "im20": [120, 80, 70, 60, 25, 15], "im60": [600, 40]}
    side = {"im10": 240, "im20": 120, "im60": 40}
    cubes = {k: np.stack([rng.normal(m, 4.0, (side[k], side[k])) for m in ms]).astype(np.float32) for k, ms in means.items()}
    dsen2, _, _ = _wald2(cubes, upsample.get("dsen2"))
    bicubic, _, _ = _wald2(cubes, upsample.get("bicubic"))
    # tighter than the 2 DN slack: the unguarded network paints the 10 m noise in (5.0 against 3.6)
    assert dsen2 <= bicubic + 0.5, (dsen2, bicubic)


def test_guard_gives_the_input_back_on_real_land():
    """The stated tolerance: degraded by the protocol's operator, the output gives its input back
    to within the schedule's contraction (13.4 %) of the unguarded network's residual at 2x, and
    exactly (< 0.01 DN) at 6x."""
    cubes = read_mat(fixtures_dir("sentinel2-crops/S2A_MSIL1C_20170527_T33UUB.mat"))
    sc = wald.trim({k: v[:, : v.shape[1] // 3, : v.shape[2] // 3] for k, v in cubes.items()})
    guarded, raw = (upsample.get("dsen2", guard=g)(sc["im10"], sc["im20"], sc["im60"]) for g in (True, False))
    for names, s, key, tol in ((BANDS_20M, 2, "im20", consistency.contraction(2)), (BANDS_60M, 6, "im60", 1e-4)):
        idx = [upsample.BANDS_SR.index(b) for b in names]
        x = torch.from_numpy(sc[key])
        before = consistency.residual(torch.from_numpy(raw[idx]), x, s)
        after = consistency.residual(torch.from_numpy(guarded[idx]), x, s)
        assert before > 10 and after <= tol * before + 0.01, (s, before, after)
