"""dataset_builder/sr/adapt.py: DSen2 fine-tuned on each scene's own bands under Wald's protocol,
for that scene alone; its pairs against the protocol's own implementation (sr_lab.wald), and
the build recording one adapted digest per tile."""
import json

import numpy as np
import pytest
import torch

from dataset_builder import upsample
from dataset_builder.build import BuildConfig, build
from dataset_builder.sr import adapt
from dataset_builder.sr.infer import net_input
from sr_lab import wald


def _scene(seed: int, side: int = 216):
    rng = np.random.default_rng(seed)
    base = rng.normal(1500, 400, (side, side)).astype(np.float32)
    b10 = np.stack([base * (1 + 0.1 * k) for k in range(4)])
    b20 = np.stack([base.reshape(side // 2, 2, side // 2, 2).mean((1, 3)) * (0.8 + 0.1 * k) for k in range(6)])
    b60 = np.stack([base.reshape(side // 6, 6, side // 6, 6).mean((1, 3)) * (0.5 + 0.2 * k) for k in range(2)])
    return b10, b20, b60


@pytest.mark.parametrize("ratio", [2, 6])
def test_pairs_are_walds_protocol(ratio):
    """The adaptation's pair equals sr_lab.wald.pair (scipy's Gaussian and block mean)."""
    b10, b20, b60 = _scene(1, 576)
    x, y = adapt.wald_pair(ratio, b10, b20, b60)
    low, target = wald.pair({"im10": b10, "im20": b20, "im60": b60}, ratio)
    want = net_input(ratio, low["im10"], low["im20"], low.get("im60"))
    np.testing.assert_allclose(x.numpy(), want.numpy(), rtol=1e-5, atol=0.05)
    np.testing.assert_array_equal(y.numpy(), target)


def test_too_small_a_piece_gives_no_pair():
    b10, b20, b60 = _scene(1, 216)  # 6x: a degraded side of 36 < the 48 px crop
    assert adapt.wald_pair(6, b10, b20, b60) is None and adapt.wald_pair(2, b10, b20, b60) is not None


def test_a_scene_adapts_a_copy_the_same_way_every_time():
    up = upsample.get("dsen2", adapt=4, precision="fp32")
    before = {r: {k: v.clone() for k, v in n.state_dict().items()} for r, n in up.nets.items()}
    pieces = [_scene(1, 576)]
    a = up.for_scene(pieces)
    assert a is not up and a.adaptation["nets"]["2"]["steps"] == 4 and a.adaptation["nets"]["6"]["steps"] == 4
    for r, n in up.nets.items():  # the shipped networks are untouched
        assert all(torch.equal(v, before[r][k]) for k, v in n.state_dict().items())
    assert adapt.weights_digest(a.nets[2]) != adapt.weights_digest(up.nets[2])
    again = up.for_scene([_scene(1, 576)])
    other = up.for_scene([_scene(2, 576)])
    assert again.adaptation == a.adaptation  # seeded by the scene's pixels
    assert other.adaptation["nets"]["2"]["sha256"] != a.adaptation["nets"]["2"]["sha256"]
    out = a(*pieces[0])
    assert out.shape == (8, 576, 576) and np.isfinite(out).all()
    assert up.describe()["adapt"]["steps"] == 4 and "adapt" not in upsample.get("dsen2").describe()


def test_interpolations_and_unadapted_dsen2_are_their_own_scene_upsampler():
    for up in (upsample.get("bilinear", adapt=5), upsample.get("dsen2")):
        assert upsample.for_scene(up, lambda: pytest.fail("no pieces are made for a method that does not adapt")) is up


def test_the_build_adapts_per_tile_and_records_each_digest(built, products, tmp_path):
    cfg = BuildConfig(out_dir=str(tmp_path / "a"), clc=built[2].clc, progress=False, sr_adapt=3, sr_precision="fp32")
    m = build(products, cfg)
    assert not m["tiles_failed"] and m["config"]["super_resolution"]["adapt"]["steps"] == 3
    digests = [t["sr_adapted"]["nets"]["2"]["sha256"] for t in m["tiles"].values()]
    assert len(digests) == len(products) and len(set(digests)) == len(digests)  # one scene, one set of weights
    again = build(products, BuildConfig(out_dir=str(tmp_path / "a"), clc=built[2].clc, progress=False, sr_adapt=3,
                                        sr_precision="fp32"))
    assert json.dumps(again["tiles"], sort_keys=True) == json.dumps(m["tiles"], sort_keys=True)  # resumed as it was
