"""dataset_builder/sr/infer.py: what DSen2 hands the archive is checked, whatever the weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bigearth.errors import InputError
from bigearth.record import BANDS_20M, BANDS_60M
from dataset_builder.interpolate import BANDS_SR
from dataset_builder.sr.infer import RANGE_FLOOR, RANGE_SHARE, DSen2, check_output, clamp_to_neighbourhood
from dataset_builder.sr.weights import save_bundle

from .test_sr_model import random_net, scene


def _inside(b20, b60):
    """An output whose every band lies exactly at its input's range (the most a check must accept)."""
    out = np.empty((len(BANDS_SR), b20.shape[1] * 2, b20.shape[2] * 2), np.float32)
    for cube, names in ((b20, BANDS_20M), (b60, BANDS_60M)):
        for k, name in enumerate(names):
            band = out[BANDS_SR.index(name)]
            band[:] = cube[k].min()
            band[0, 0] = cube[k].max()
    return out


def test_output_in_its_inputs_range_passes_and_past_it_is_refused():
    _, b20, b60 = scene()
    out = _inside(b20, b60)
    check_output(out, b20, b60, ["w.npz"])
    b09 = BANDS_SR.index(BANDS_60M[1])
    span = float(b60[1].max() - b60[1].min())
    out[b09, 1, 1] = b60[1].max() + span + RANGE_FLOOR - 1  # inside the widened range
    check_output(out, b20, b60, ["w.npz"])
    out[b09, 1, 1] = b60[1].max() + span + RANGE_FLOOR + 1  # just past it
    with pytest.raises(InputError, match=r"w\.npz: DSen2 produced B09 values in .* out of any plausible range"):
        check_output(out, b20, b60, ["w.npz"])
    out = _inside(b20, b60)
    out[BANDS_SR.index("B05"), 3, 3] = np.nan
    with pytest.raises(InputError, match=r"w\.npz: DSen2 produced 1 non-finite value"):
        check_output(out, b20, b60, ["w.npz"])


def test_runaway_weights_write_nothing(tmp_path):
    """Finite weights whose detail runs away (the tail's bias at 1e4 in reflectance units): without
    the guard the output leaves any plausible range, and the call fails naming the bundle."""
    nets = {r: random_net(r, 1, 8, r) for r in (2, 6)}
    with torch.no_grad():
        nets[6].tail.bias.fill_(1e4)
    path = save_bundle(tmp_path / "runaway.npz", nets, {"provenance": {"test": True}})
    b10, b20, b60 = scene()
    with pytest.raises(InputError, match=r"runaway\.npz: DSen2 produced B01 values"):
        DSen2(str(path), guard=False)(b10, b20, b60)
    assert np.isfinite(DSen2(str(path), guard=True)(b10, b20, b60)).all()  # the guard bounds what reaches the check


def test_the_guard_holds_each_pixel_to_its_coarse_neighbourhood():
    """A value past the range of the 3 x 3 coarse pixels around its own (widened by that range's
    share plus the floor) is moved to that bound, computed here pixel by pixel; every other value
    is left bit for bit."""
    rng = np.random.default_rng(3)
    s = 6
    coarse = rng.uniform(200, 2000, (2, 5, 4)).astype(np.float32)
    sr = np.repeat(np.repeat(coarse, s, 1), s, 2) + rng.normal(0, 50, (2, 30, 24)).astype(np.float32)
    sr[0, 13, 8] = 9000.0  # a spike
    sr[1, 29, 23] = -5000.0  # a hole, at a corner (a neighbourhood of 2 x 2 coarse pixels)
    held = clamp_to_neighbourhood(torch.from_numpy(sr), torch.from_numpy(coarse), s).numpy()
    for b, y, x in ((0, 13, 8), (1, 29, 23)):
        win = coarse[b, max(0, y // s - 1):y // s + 2, max(0, x // s - 1):x // s + 2]
        span = float(win.max() - win.min())
        bound = win.max() + RANGE_SHARE * span + RANGE_FLOOR if sr[b, y, x] > 0 else win.min() - RANGE_SHARE * span - RANGE_FLOOR
        assert held[b, y, x] == pytest.approx(bound, abs=1e-3)
    moved = held != sr
    assert moved.sum() == 2 and moved[0, 13, 8] and moved[1, 29, 23]


def test_a_spike_the_guard_lets_through_is_held_and_counted(tmp_path, monkeypatch):
    """A 6x network output that is its interpolated input plus one spike of 30,000 DN: budget and
    consistency bound detail in energy, and the spike passes them out of any plausible range (the
    check refuses it without the range bound). With it, the spike is held, the output passes the
    check, the moved values are counted on the upsampler (what a build's manifest and sr-eval's
    report state), and an output with no spike is left as it was (nothing counted)."""
    from dataset_builder.sr import infer
    path = save_bundle(tmp_path / "w.npz", {r: random_net(r, 1, 8, r) for r in (2, 6)}, {"provenance": {"test": True}})
    b10, b20, b60 = scene()
    real = infer.run_tiled

    def spiky(net, x, **kw):
        out = real(net, x, **kw)
        if net.spec.ratio == 6:
            out[0, 40, 30] += 30000.0
        return out
    monkeypatch.setattr(infer, "run_tiled", spiky)
    up = DSen2(str(path), guard=True)
    out = up(b10, b20, b60)
    check_output(out, b20, b60, ["w.npz"])
    assert up.held_px >= 1
    monkeypatch.setattr(infer, "clamp_to_neighbourhood", lambda sr, coarse, s: sr)
    with pytest.raises(InputError, match=r"DSen2 produced B01 values"):
        DSen2(str(path), guard=True)(b10, b20, b60)
    monkeypatch.setattr(infer, "run_tiled", real)
    monkeypatch.undo()
    plain = DSen2(str(path), guard=True)
    plain(b10, b20, b60)
    assert plain.held_px == 0


def test_low_precision_keeps_the_residual_exact_and_follows_the_weights():
    """bf16 runs the convolutions on a cast copy of the weights, made once per network and made
    again when the network's weights change in place; the interpolated input is added in fp32,
    so a network adding no detail returns it bit for bit (a 16-bit sum would round 3,000 DN by
    up to 8 DN), and the output stays near fp32's."""
    from dataset_builder.sr import infer
    from dataset_builder.sr.model import zero_tail
    x = torch.from_numpy(np.random.default_rng(0).uniform(1000, 4000, (10, 48, 40)).astype(np.float32))
    flat = zero_tail(random_net(2))
    out = infer.run_tiled(flat, x, core=16, precision="bf16")
    assert torch.equal(out, x[-6:])
    net = random_net(2)
    lo, hi = (infer.run_tiled(net, x, core=16, precision=p) for p in ("bf16", "fp32"))
    assert not torch.equal(lo, hi) and float((lo - hi).abs().max()) < 20
    assert infer._low_precision(net, "bf16") is infer._low_precision(net, "bf16")  # cast once
    with torch.no_grad():
        net.tail.bias += 0.05  # 100 DN more detail in every band: the cast copy must follow
    moved = infer.run_tiled(net, x, core=16, precision="bf16")
    assert float((moved - lo).mean()) == pytest.approx(100, abs=1)
