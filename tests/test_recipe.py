"""reference_train/recipe.py: the learning-rate rule and schedule, the augmentations and mixup, against their formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reference_train.recipe import augment, lr_at, mixup, rot_flip, scaled_lr


@pytest.mark.parametrize("k", [1, 2, 8])
def test_learning_rate_rule_and_schedule(k):
    peak = scaled_lr(0.1, k, 64)
    assert peak == pytest.approx(0.1 * k * 64 / 256)
    one = 0.1 * 64 / 256  # one worker's rate: where the warm-up starts
    expect = {0.0: one, 1.25: one + (peak - one) * 0.25, 2.5: one + (peak - one) * 0.5, 4.999: one + (peak - one) * 4.999 / 5,
              5.0: peak, 29.9: peak, 30.0: peak * 0.1, 59.5: peak * 0.1, 60.0: peak * 0.01, 80.0: peak * 0.001,
              99.9: peak * 0.001}
    for epoch, lr in expect.items():
        assert lr_at(epoch, peak, k) == pytest.approx(lr, rel=1e-12), epoch


def test_rotations_flips_and_mixup_on_known_tensors():
    x = torch.arange(4 * 2 * 3 * 3, dtype=torch.float32).reshape(4, 2, 3, 3)
    k = torch.tensor([0, 1, 2, 3])
    flip = torch.tensor([False, True, False, True])
    out = rot_flip(x, k, flip).numpy()
    for i in range(4):
        ref = np.rot90(x[i].numpy(), int(k[i]), axes=(1, 2))
        ref = ref[:, :, ::-1] if flip[i] else ref
        np.testing.assert_array_equal(out[i], ref)
    native = {"10m": torch.rand(4, 4, 12, 12), "20m": torch.rand(4, 6, 6, 6), "60m": torch.rand(4, 2, 2, 2)}
    rot = rot_flip(native, k, flip)
    for name, v in native.items():
        for i in range(4):
            ref = np.rot90(v[i].numpy(), int(k[i]), axes=(1, 2))
            np.testing.assert_array_equal(rot[name][i].numpy(), ref[:, :, ::-1] if flip[i] else ref)
    y = torch.eye(4)
    perm = torch.tensor([1, 0, 3, 2])
    mx, my = mixup(x, y, 0.7, perm)
    torch.testing.assert_close(mx[0], 0.7 * x[0] + 0.3 * x[1])
    torch.testing.assert_close(my, torch.tensor([[0.7, 0.3, 0, 0], [0.3, 0.7, 0, 0], [0, 0, 0.7, 0.3], [0, 0, 0.3, 0.7]]))
    a = augment(x, y, torch.Generator().manual_seed(5), 0.2)
    b = augment(x, y, torch.Generator().manual_seed(5), 0.2)
    torch.testing.assert_close(a, b)  # the same seed, the same transforms (what resume relies on)
    assert not torch.equal(a[0], x)


# --------------------------------------------------------------------------- 1 vs N processes
