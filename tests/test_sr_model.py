"""DSen2 networks, tiled inference and the dsen2 upsampler (dataset_builder/sr/model.py, infer.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bigearth.record import BANDS_20M, BANDS_60M
from dataset_builder import upsample
from dataset_builder.sr import consistency
from dataset_builder.sr.consistency import reflect_index
from dataset_builder.sr.infer import DSen2, net_input, run_tiled, upsample_stack
from dataset_builder.sr.model import DSen2Net, NetSpec, zero_tail
from dataset_builder.sr.weights import save_bundle


def random_net(ratio, blocks=2, features=8, seed=0) -> DSen2Net:
    torch.manual_seed(seed)
    net = DSen2Net(NetSpec(ratio, blocks, features))
    with torch.no_grad():  # a visible detail term: the tail starts at zero otherwise
        net.tail.weight.normal_(0, 0.05)
        net.tail.bias.normal_(0, 0.01)
    return net.eval()


def tiny_bundle(path, blocks=2, features=8, seed=0, zero=False):
    nets = {r: random_net(r, blocks, features, seed + r) for r in (2, 6)}
    if zero:
        nets = {r: zero_tail(n) for r, n in nets.items()}
    return save_bundle(path, nets, {"provenance": {"test": True}})


def scene(h=96, w=72, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 4000, (4, h, w)).astype(np.float32), rng.uniform(0, 4000, (6, h // 2, w // 2)).astype(np.float32),
            rng.uniform(0, 4000, (2, h // 6, w // 6)).astype(np.float32))


@pytest.mark.parametrize("ratio, cin, cout", [(2, 10, 6), (6, 12, 2)])
def test_shapes(ratio, cin, cout):
    net = DSen2Net(NetSpec(ratio, 3, 16))
    assert net.spec.in_bands == cin and net.spec.out_bands == cout and net.spec.radius == 8
    assert net(torch.zeros(2, cin, 20, 24)).shape == (2, cout, 20, 24)
    assert len(net.convs()) == 2 * 3 + 2
    with pytest.raises(ValueError, match="ratio"):
        NetSpec(4)


def test_zero_tail_returns_the_upsampled_input_exactly():
    b10, b20, b60 = scene()
    for ratio in (2, 6):
        net = zero_tail(random_net(ratio))
        x = net_input(ratio, b10, b20, b60)
        with torch.no_grad():
            torch.testing.assert_close(net(x[None])[0], x[-net.spec.out_bands:], rtol=0, atol=0)


def test_dsen2_with_zero_detail_is_the_bilinear_upsampler(tmp_path):
    """The global residual adds the builder's own bilinear: with zero detail and no guard, DSen2 ==
    bilinear, bit for bit; with the guard, the guard of the bilinear result (which starts by moving
    it onto the consistency set), and an output that degrades back to its input."""
    from dataset_builder.sr.infer import detail_weight, guard
    w = str(tiny_bundle(tmp_path / "z.npz", zero=True))
    b10, b20, b60 = scene()
    bil = upsample.get("bilinear")(None, b20, b60)
    np.testing.assert_array_equal(DSen2(w, guard=False)(b10, b20, b60), bil)
    got = DSen2(w, precision="fp32")(b10, b20, b60)
    weight = detail_weight(torch.from_numpy(b10))
    for names, s, coarse in ((BANDS_20M, 2, b20), (BANDS_60M, 6, b60)):
        idx = [upsample.BANDS_SR.index(b) for b in names]
        up, c = torch.from_numpy(bil[idx]), torch.from_numpy(coarse)
        np.testing.assert_allclose(got[idx], guard(up, up, c, s, weight).numpy(), rtol=0, atol=1e-2)
        assert consistency.residual(torch.from_numpy(got[idx]), c, s) < consistency.residual(up, c, s) / 5


def _cl(net):
    """A copy of ``net`` in channels-last, as ``run_tiled`` runs it: the same arithmetic in fp32,
    bit for bit, where NCHW kernels differ in the last bits (by 5e-4 DN on one AMD EPYC host)."""
    import copy
    return copy.deepcopy(net).to(memory_format=torch.channels_last)


@pytest.mark.parametrize("core", [16, 37, 64, 500])
def test_tiled_equals_whole_image(core):
    net = random_net(2, blocks=3)
    x = torch.rand(10, 90, 130) * 4000
    m = net.spec.radius  # the image's borders are mirrored by the network's reach, then cut off again
    with torch.no_grad():  # in the tiles' memory format: oneDNN's NCHW and NHWC kernels round differently
        padded = x[None][:, :, reflect_index(90, m)][:, :, :, reflect_index(130, m)]
        whole = _cl(net)(padded.contiguous(memory_format=torch.channels_last))[0, :, m:-m, m:-m]
    tiled = run_tiled(net, x, core=core, batch=3)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=0)  # fp32: no seams at all


def test_image_borders_are_mirrored_not_zero_padded():
    """A constant image meets no zero padding: every output pixel is the same."""
    net = random_net(2, blocks=3)
    out = run_tiled(net, torch.full((10, 40, 50), 1234.0), core=16)
    assert float((out.amax((1, 2)) - out.amin((1, 2))).max()) < 1e-3


def test_region_computes_only_what_is_asked():
    net = random_net(6)
    x = torch.rand(12, 80, 100) * 4000
    with torch.no_grad():
        whole = _cl(net)(x[None].contiguous(memory_format=torch.channels_last))[0]
    got = run_tiled(net, x, core=20, region=(10, 50, 30, 90))
    torch.testing.assert_close(got[:, 10:50, 30:90], whole[:, 10:50, 30:90], rtol=0, atol=0)
    assert not got[:, :10].any() and not got[:, :, :30].any()


def test_upsample_stack_is_the_builders_bilinear():
    a = torch.rand(3, 10, 12)
    up = upsample_stack(a, 6)
    for k in range(3):
        ref = torch.empty(60, 72)
        upsample.bilinear(a[k].contiguous(), 6, ref)
        assert torch.equal(up[k], ref)


@pytest.mark.parametrize("method", ["dsen2", "bilinear", "bicubic"])
def test_strips_of_kept_columns_equal_a_whole_image_run(tmp_path, method):
    """The builder's path: strips (row halo) over runs of kept patches (column halo) == one whole run."""
    up = DSen2(str(tiny_bundle(tmp_path / "w.npz", blocks=3))) if method == "dsen2" else upsample.get(method)
    rng = np.random.default_rng(1)
    n, p = 240, 60  # 4 x 4 "patches" of 60 px
    bands = {**{b: rng.integers(100, 4000, (n, n), dtype=np.uint16) for b in ("B02", "B03", "B04", "B08")},
             **{b: rng.integers(100, 4000, (n // 2, n // 2), dtype=np.uint16) for b in ("B05", "B06", "B07", "B8A", "B11", "B12")},
             **{b: rng.integers(100, 4000, (n // 6, n // 6), dtype=np.uint16) for b in ("B01", "B09")}}
    conv = lambda b, a: a.astype(np.float32)  # noqa: E731
    whole = upsample.upsample_rows(up, bands, conv, 0, n)
    for r in range(0, n, p):
        kept = [0, 2, 3] if r else [1]
        strip = upsample.upsample_rows(up, bands, conv, r, r + p, kept, patch=p)
        for x in range(4):
            got = strip[:, :, x * p:(x + 1) * p]
            if x in kept:
                np.testing.assert_array_equal(got, whole[:, r:r + p, x * p:(x + 1) * p])
            else:
                assert not got.any()  # never computed


def test_bicubic_matches_gdal_cubic(tmp_path):
    """bicubic == GDAL's cubic (Keys, a = -0.5) upsampling, away from the clamped edges."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import Affine
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 3000, (30, 24)).astype(np.float32)
    path = tmp_path / "a.tif"
    with rasterio.open(path, "w", driver="GTiff", width=24, height=30, count=1, dtype="float32",
                       transform=Affine(20, 0, 0, 0, -20, 0), crs="EPSG:32633") as ds:
        ds.write(a, 1)
    with rasterio.open(path) as ds:
        ref = ds.read(1, out_shape=(60, 48), resampling=Resampling.cubic)
    b20 = np.stack([a] * 6)
    got = upsample.get("bicubic")(None, b20, np.zeros((2, 10, 8), np.float32))[upsample.BANDS_SR.index("B05")]
    np.testing.assert_allclose(got[4:-4, 4:-4], ref[4:-4, 4:-4], rtol=0, atol=0.05)
