"""bigearth/pictures.py: the one contrast stretch, against numpy's percentiles."""
from __future__ import annotations

import numpy as np
import pytest

from bigearth.pictures import HIGH, LOW, rgb_image, stretch_limits


def test_rgb_is_the_cube_stretched_between_its_percentiles():
    rng = np.random.default_rng(0)
    cube = rng.gamma(2.0, 400.0, (3, 40, 50)).astype(np.float32)
    cube[0, :2] = 12000  # a bright cloud edge: the stretch ignores the top 2 %
    lo, hi = np.percentile(cube, (LOW, HIGH))
    assert stretch_limits(cube) == pytest.approx((lo, hi))
    img = rgb_image(cube)
    assert img.shape == (40, 50, 3) and img.min() == 0 and img.max() == 1
    np.testing.assert_allclose(img[..., 1], np.clip((cube[1] - lo) / (hi - lo), 0, 1), atol=1e-6)
    # limits given: the same pair for all three bands, the colours keep their balance
    np.testing.assert_allclose(rgb_image(cube, (0, 2000))[..., 2], np.clip(cube[2] / 2000, 0, 1), atol=1e-6)


def test_a_flat_patch_and_a_wrong_shape():
    flat = np.full((3, 8, 8), 500, np.uint16)
    lo, hi = stretch_limits(flat)
    assert hi > lo and np.isfinite(rgb_image(flat)).all()
    with pytest.raises(ValueError, match=r"an RGB cube is \(3, H, W\), got shape \(4, 8, 8\)"):
        rgb_image(np.zeros((4, 8, 8)))
