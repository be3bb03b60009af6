"""DSen2 weight files: our bundle and the authors' Keras 2 layout (dataset_builder/sr/weights.py)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from bigearth.errors import InputError
from dataset_builder.sr import weights
from dataset_builder.sr.model import SCALE

from .test_sr_model import tiny_bundle


def write_keras(path, ratio, blocks, features, seed=0, first_index=1, drop=None, bad_shape=None):
    """A Keras 2 ``save_weights`` file as DSen2's model produces it: auto-named layers, the
    convolutions among weightless ones, kernels HWIO. Returns the (kernel, bias) list."""
    rng = np.random.default_rng(seed)
    cin = 10 if ratio == 2 else 12
    cout = 6 if ratio == 2 else 2
    shapes = [(cin, features)] + [(features, features)] * (2 * blocks) + [(features, cout)]
    convs = [(rng.normal(0, 0.1, (3, 3, i, o)).astype(np.float32), rng.normal(0, 0.05, o).astype(np.float32))
             for i, o in shapes]
    layers = ["input_1", "input_2", "concatenate_1"]
    k = first_index
    conv_names = []
    for j in range(len(convs)):
        conv_names.append(f"conv2d_{k}")
        layers.append(f"conv2d_{k}")
        k += 1
        if j == 0 or j % 2 == 1:
            layers.append(f"activation_{j + 1}")
        elif j < len(convs) - 1:
            layers += [f"lambda_{j}", f"add_{j}"]
    layers.append("add_final")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        ci = 0
        for n in layers:
            g = f.create_group(n)
            if n.startswith("conv2d_"):
                kernel, bias = convs[ci]
                if bad_shape == n:
                    kernel = kernel[:, :, :-1]
                ci += 1
                names = [f"{n}/kernel:0", f"{n}/bias:0"]
                if drop == n:
                    names = names[1:]
                g.attrs["weight_names"] = np.array([w.encode() for w in names])
                sub = g.create_group(n)
                if drop != n:
                    sub["kernel:0"] = kernel
                sub["bias:0"] = bias
            else:
                g.attrs["weight_names"] = np.array([], dtype="S1")
    return convs, conv_names


def numpy_forward(convs, x):
    """The DSen2 forward pass with plain NumPy 'same' correlations: (C, H, W) -> (O, H, W)."""
    def conv(a, kernel, bias):
        c, h, w = a.shape
        p = np.pad(a, ((0, 0), (1, 1), (1, 1)))
        out = np.zeros((kernel.shape[3], h, w), np.float64)
        for dy in range(3):
            for dx in range(3):
                out += np.einsum("chw,co->ohw", p[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
        return out + bias[:, None, None]

    z = x / SCALE
    h = np.maximum(conv(z, *convs[0]), 0)
    for i in range(1, len(convs) - 1, 2):
        h = h + 0.1 * conv(np.maximum(conv(h, *convs[i]), 0), *convs[i + 1])
    y = conv(h, *convs[-1])
    return y * SCALE + x[-y.shape[0]:]


@pytest.mark.parametrize("ratio, blocks, first", [(2, 2, 1), (6, 3, 27)])
def test_keras_file_maps_onto_the_modules(tmp_path, ratio, blocks, first):
    path = tmp_path / f"s2_{ratio}.hdf5"
    convs, _ = write_keras(path, ratio, blocks, 8, seed=ratio, first_index=first)
    net = weights.load_keras(path)
    assert (net.spec.ratio, net.spec.blocks, net.spec.features) == (ratio, blocks, 8)
    x = np.random.default_rng(5).uniform(0, 5000, (net.spec.in_bands, 13, 11))
    with torch.no_grad():
        got = net(torch.from_numpy(x.astype(np.float32))[None])[0].double().numpy()
    np.testing.assert_allclose(got, numpy_forward([(k.astype(np.float64), b) for k, b in convs], x), rtol=1e-4, atol=0.05)


def test_two_keras_files_make_a_bundle(tmp_path):
    write_keras(tmp_path / "a.hdf5", 6, 1, 4)
    write_keras(tmp_path / "b.hdf5", 2, 1, 4)
    out = weights.convert([tmp_path / "a.hdf5", tmp_path / "b.hdf5"], tmp_path / "bundle.npz")
    nets, meta = weights.load_bundle(out)
    direct = weights.load_keras(tmp_path / "b.hdf5")
    for k, v in direct.state_dict().items():
        assert torch.equal(nets[2].state_dict()[k], v)
    assert set(meta["provenance"]["converted_from"]) == {"a.hdf5", "b.hdf5"}
    with pytest.raises(InputError, match="a second 2x network"):
        weights.load(f"{tmp_path / 'b.hdf5'},{tmp_path / 'b.hdf5'}")
    with pytest.raises(InputError, match=r"b\.hdf5: one Keras file holds one network; give the 2x and the 6x"):
        weights.load(str(tmp_path / "b.hdf5"))


def test_bad_keras_files_name_the_file_and_layer(tmp_path):
    p = tmp_path / "missing.hdf5"
    _, names = write_keras(p, 2, 1, 4, drop="conv2d_2")
    with pytest.raises(InputError, match=r"missing\.hdf5: layer conv2d_2: expected one kernel"):
        weights.load_keras(p)
    p = tmp_path / "shape.hdf5"
    write_keras(p, 2, 1, 4, bad_shape="conv2d_3")
    with pytest.raises(InputError, match=r"shape\.hdf5: layer conv2d_3: kernel \(3, 3, 3, 4\)"):
        weights.load_keras(p)
    p = tmp_path / "text.hdf5"
    p.write_text("not hdf5")
    with pytest.raises(InputError, match=r"text\.hdf5: not an HDF5 file"):
        weights.load_keras(p)
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(InputError, match="no 'layer_names'"):
        weights.load_keras(p)


def test_bundle_round_trip_and_bad_bundles(tmp_path):
    path = tiny_bundle(tmp_path / "b.npz")
    nets, meta = weights.load_bundle(path)
    assert meta["provenance"] == {"test": True} and meta["nets"]["6"] == {"blocks": 2, "features": 8}
    nets2, prov = weights.load(str(path))
    assert prov["files"] == {"b.npz": __import__("bigearth.files", fromlist=["x"]).sha256_file(path)}
    z = dict(np.load(path, allow_pickle=False))
    del z["net6.tail.weight"]
    np.savez(tmp_path / "cut.npz", **z)
    with pytest.raises(InputError, match=r"cut\.npz: tensor net6\.tail\.weight is missing"):
        weights.load_bundle(tmp_path / "cut.npz")
    z = dict(np.load(path, allow_pickle=False))
    z["net2.head.weight"] = z["net2.head.weight"][:, :3]
    np.savez(tmp_path / "shape.npz", **z)
    with pytest.raises(InputError, match=r"shape\.npz: tensor net2\.head\.weight has shape"):
        weights.load_bundle(tmp_path / "shape.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"junk\.npz: not a DSen2 weights bundle"):
        weights.load_bundle(tmp_path / "junk.npz")
    # a pickled object inside is refused, never executed
    np.savez(tmp_path / "pickle.npz", meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match=r"pickle\.npz"):
        weights.load_bundle(tmp_path / "pickle.npz")


@pytest.mark.parametrize("value, problem", [(np.nan, r"has 1 non-finite value\(s\)"), (np.inf, r"has 1 non-finite value\(s\)"),
                                            (None, r"is of type int32, expected floating point")])
def test_weights_that_are_not_finite_floats_are_refused(tmp_path, value, problem):
    """NaN weights once gave an archive of zeros with exit 0: refused when loaded, file and tensor named."""
    z = dict(np.load(tiny_bundle(tmp_path / "b.npz"), allow_pickle=False))
    if value is None:
        z["net6.body.0.conv1.bias"] = z["net6.body.0.conv1.bias"].astype(np.int32)
    else:
        z["net6.body.0.conv1.bias"][3] = value
    np.savez(tmp_path / "bad.npz", **z)
    with pytest.raises(InputError, match=r"bad\.npz: tensor net6\.body\.0\.conv1\.bias " + problem):
        weights.load(str(tmp_path / "bad.npz"))


def test_shipped_default_loads():
    nets, prov = weights.load(None)
    assert set(nets) == {2, 6} and prov["source"] == "bundle"
    assert weights.DEFAULT.stat().st_size <= 4 * 2 ** 20
    assert prov["provenance"]["trained_by"] == "bigearth-sr sr-train"
    # trained under the cross-scene rule: it names its scenes, real and synthetic, none left out
    p = prov["provenance"]
    assert len(p["train_scenes"]) + len(p["val_scenes"]) == 22 and "S2A_20170527" in p["train_scenes"] + p["val_scenes"]


def test_float16_storage_reads_back_as_the_rounded_weights(tmp_path):
    """A bundle stored in float16 (the shipped paper-size model's) holds half the bytes and reads
    back as float32 equal to each weight rounded to float16, nothing else changed."""
    path = tiny_bundle(tmp_path / "b.npz")
    nets, meta = weights.load_bundle(path)
    half = weights.save_bundle(tmp_path / "h.npz", nets, {"provenance": meta["provenance"]}, storage="float16")
    nets16, meta16 = weights.load_bundle(half)
    assert meta16["storage"] == "float16" and meta["storage"] == "float32"
    for r in (2, 6):
        for k, v in nets[r].state_dict().items():
            got = nets16[r].state_dict()[k]
            assert got.dtype == torch.float32
            assert torch.equal(got, v.half().float()), k
    z = np.load(half, allow_pickle=False)
    assert {z[k].dtype for k in z.files if k != "meta"} == {np.dtype(np.float16)}
    big = nets[2]
    with torch.no_grad():
        big.head.bias[0] = 1e6  # beyond float16's 65504: refused, not stored as inf
    with pytest.raises(ValueError, match=r"net2\.head\.bias exceeds float16's range"):
        weights.save_bundle(tmp_path / "x.npz", {2: big, 6: nets[6]}, {}, storage="float16")
    assert not (tmp_path / "x.npz").exists()


def test_shipped_models_by_name():
    """``model`` picks shipped weights; an unknown name or a model beside explicit weights is refused."""
    assert weights.shipped("default") == weights.DEFAULT
    with pytest.raises(ValueError, match="unknown DSen2 model 'huge'; shipped: default, paper"):
        weights.load(None, "huge")
    with pytest.raises(ValueError, match="give DSen2 weights or a shipped model, not both"):
        weights.load("some.npz", "paper")
    _, prov = weights.load(None)
    assert prov["model"] == "default"


def test_what_a_bundle_declares_is_bounded_before_anything_is_allocated(tmp_path):
    """Issue 34: a member whose .npy header declares a 35 PiB tensor, or a meta naming a network of
    10^9 blocks, is refused from what it declares in one line, never allocated (a raw MemoryError
    traceback before)."""
    import io
    import json
    import zipfile
    src = tiny_bundle(tmp_path / "b.npz")

    def rewritten(name, member, data):
        out = tmp_path / name
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, data if info.filename == member else zin.read(info.filename))
        return out

    head = io.BytesIO()
    np.lib.format.write_array_header_2_0(head, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 53,)})
    huge = rewritten("huge.npz", "net2.head.weight.npy", head.getvalue() + b"\0" * 64)  # magic, header, no data
    with pytest.raises(InputError) as e:
        weights.load_bundle(huge)
    assert str(e.value) == (f"{huge}: tensor net2.head.weight has shape ({2 ** 53},), expected "
                            f"{tuple(weights.load_bundle(src)[0][2].state_dict()['head.weight'].shape)}")
    meta = json.loads(str(np.load(src)["meta"]))
    meta["nets"]["2"]["blocks"] = 10 ** 9
    buf = io.BytesIO()
    np.save(buf, np.array(json.dumps(meta)))
    spec = rewritten("spec.npz", "meta.npy", buf.getvalue())
    with pytest.raises(InputError, match=r"spec\.npz: meta's 2x network declares 1000000000 blocks of 8 features, "
                                         r"beyond 64 x 1024"):
        weights.load_bundle(spec)
