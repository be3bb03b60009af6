"""dataset_builder/sr/infer.py: what DSen2 hands the archive is checked, whatever the weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bigearth.errors import InputError
from bigearth.record import BANDS_20M, BANDS_60M
from dataset_builder.interpolate import BANDS_SR
from dataset_builder.sr.infer import RANGE_FLOOR, DSen2, check_output
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
