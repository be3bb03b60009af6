"""reference_train/recipe.py: the learning-rate rule and schedule, the augmentations and mixup, against their formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reference_train.recipe import augment, fit_milestones, lr_at, mixup, rot_flip, scaled_lr


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


def test_mixup_draws_lambda_per_patch_by_default_and_per_batch_on_request():
    """Per patch (the paper): sample i is lam_i * x_i + (1 - lam_i) * x_perm(i) with its own
    lam_i, the same for its labels and for every cube of a native sample."""
    torch.manual_seed(0)
    b = 64
    x = torch.rand(b, 3, 4, 4)
    native = {"10m": x, "20m": torch.rand(b, 6, 2, 2)}
    y = torch.eye(b)  # one-hot rows: a mixed row reads lam_i at i and 1 - lam_i at perm(i)
    for mode in ("per-patch", "per-batch"):
        mx, my = augment(x, y, torch.Generator().manual_seed(3), 0.4, rotate=False, mode=mode)
        nx, ny = augment(native, y, torch.Generator().manual_seed(3), 0.4, rotate=False, mode=mode)
        lam = my.diagonal().clone()
        partner = torch.where(my.fill_diagonal_(0) > 0, 1, 0).argmax(1)  # where the rest of each row went
        keep = lam < 1  # a row with lam == 1 (or a fixed point of the permutation) shows no partner
        for i in torch.nonzero(keep).flatten():
            j = partner[i]
            torch.testing.assert_close(mx[i], lam[i] * x[i] + (1 - lam[i]) * x[j])
            torch.testing.assert_close(nx["20m"][i], lam[i] * native["20m"][i] + (1 - lam[i]) * native["20m"][j])
        torch.testing.assert_close(ny, augment(native, y, torch.Generator().manual_seed(3), 0.4, rotate=False,
                                               mode=mode)[1])
        if mode == "per-patch":
            assert lam[keep].unique().numel() > b // 2  # one draw per patch
            # Beta(0.4, 0.4): mean 1/2, variance ab/((a+b)^2 (a+b+1)) = 0.16/(0.64 * 1.8) = 0.139
            assert abs(lam[keep].mean() - 0.5) < 0.15 and abs(lam[keep].var() - 0.139) < 0.07
        else:
            assert lam[keep].unique().numel() == 1
    with pytest.raises(ValueError, match="mixup mode"):
        augment(x, y, torch.Generator(), 0.2, mode="per-pixel")


# --------------------------------------------------------------------------- 1 vs N processes


@pytest.mark.parametrize("given, epochs, want, noted", [
    (None, 100, (30, 60, 80), False),     # the paper's run
    (None, 31, (30, 60, 80), False),      # the first milestone is reached
    (None, 10, (3, 6, 8), True),          # the README's quick line: the same fractions of 10 epochs
    (None, 2, (1,), True),                # too short for three: one decay, before the last epoch
    (None, 1, (1,), True),
    ((30, 60, 80), 10, (30, 60, 80), True),  # given: kept, with a note that the rate never decays
    ((5,), 10, (5,), False),
])
def test_milestones_fit_the_run(given, epochs, want, noted):
    got, note = fit_milestones(given, epochs)
    assert got == want and (note is not None) == noted
    if noted and given is None:
        # the fitted schedule decays within the run, where the paper's would not have
        assert lr_at(epochs - 0.5, 1.0, 1, 0.0, got, 0.1) < 1.0 or epochs == 1
        assert lr_at(epochs - 0.5, 1.0, 1, 0.0, (30, 60, 80), 0.1) == 1.0
