"""DSen2 weights: our bundle format, the authors' Keras files, and the shipped default.

A bundle is one ``.npz`` holding both networks' tensors (``net2.*``, ``net6.*``, the modules'
state-dict names) and a JSON ``meta`` string (shapes, provenance). It is read with
``allow_pickle=False`` and the Keras files through h5py: weight files are data, never code.
"""
from __future__ import annotations

import json
import re
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import torch

from bigearth.files import atomic_path, sha256_file

from bigearth.errors import InputError
from . import SIZES
from .model import DSen2Net, NetSpec

FORMAT = "bigearth-sr/dsen2-weights/1"
_SHIPPED = Path(__file__).resolve().parent / "weights"
# the weights shipped with the package, by model name (upsample.get("dsen2", model=...), --sr-model):
# the fast default, and the published DSen2's size (6 blocks of 128 features), stored in fp16
MODELS = {name: _SHIPPED / f"dsen2_{name}.npz" for name in SIZES}
DEFAULT = MODELS["default"]
STORAGE = ("float32", "float16")


def shipped(model: str) -> Path:
    """The bundle shipped as ``model``; a ValueError naming the models for another name."""
    if model not in MODELS:
        raise ValueError(f"unknown DSen2 model {model!r}; shipped: {', '.join(MODELS)}")
    return MODELS[model]


def save_bundle(path, nets: dict[int, DSen2Net], meta: dict, storage: str = "float32") -> Path:
    """Write both networks (``{2: net, 6: net}``) and ``meta`` to ``path`` atomically, the tensors
    as ``storage`` (float16 halves the file; they are read back as float32)."""
    if storage not in STORAGE:
        raise ValueError(f"storage must be one of {', '.join(STORAGE)}, not {storage!r}")
    arrays = {}
    spec = {}
    for ratio, net in sorted(nets.items()):
        spec[str(ratio)] = {"blocks": net.spec.blocks, "features": net.spec.features}
        for k, v in net.state_dict().items():
            a = v.detach().cpu().float().numpy()
            if storage == "float16":
                if np.abs(a).max(initial=0) > np.finfo(np.float16).max:
                    raise ValueError(f"tensor net{ratio}.{k} exceeds float16's range: store it as float32")
                a = a.astype(np.float16)
            arrays[f"net{ratio}.{k}"] = a
    doc = {**meta, "format": FORMAT, "nets": spec, "storage": storage}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append .npz to the name
            np.savez(f, meta=np.array(json.dumps(doc, sort_keys=True)), **arrays)
    return path


def load_bundle(path) -> tuple[dict[int, DSen2Net], dict]:
    """Both networks and the metadata of a bundle; errors name the file and the tensor."""
    path = Path(path)
    # np.load on an open file object: TFDS's test harness only lets file objects through
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        if head != b"PK\x03\x04":  # numpy would read a text file as pickled data and advise loading it unsafely
            raise InputError(path, f"not a DSen2 weights bundle: a bundle is an .npz (zip) archive, this file starts "
                                   f"with {head!r}")
        try:
            z = np.load(fh, allow_pickle=False)
            files = set(z.files)
        except Exception as e:  # zipfile/numpy raise several types for a file that is not an npz
            raise InputError(path, f"not a DSen2 weights bundle (.npz): {e}") from None
        return _read_bundle(path, z, files)


# what a bundle may declare before anything of that size is allocated (the paper's network is 6 x 128;
# a header or a spec beyond these is a damaged or hostile file, refused from what it says)
MAX_BLOCKS, MAX_FEATURES, MAX_META_BYTES = 64, 1024, 64 << 20


def _declared(path: Path, z, key: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) a member's .npy header declares, read without reading (or allocating) its data."""
    try:
        with z.zip.open(f"{key}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(fh))
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise InputError(path, f"{key}: its header cannot be read ({type(e).__name__}: {e}): the file is damaged") \
            from None
    return tuple(shape), dtype


def _spec(path: Path, ratio: int, s) -> NetSpec:
    """A network's size as the bundle's meta gives it, within bounds before the network is made."""
    try:
        blocks, features = int(s["blocks"]), int(s["features"])
    except (KeyError, TypeError, ValueError):
        raise InputError(path, f"meta's {ratio}x network has no whole blocks and features ({s!r})") from None
    if not (1 <= blocks <= MAX_BLOCKS and 1 <= features <= MAX_FEATURES):
        raise InputError(path, f"meta's {ratio}x network declares {blocks} blocks of {features} features, beyond "
                               f"{MAX_BLOCKS} x {MAX_FEATURES}: a damaged or foreign bundle, refused before any "
                               f"allocation")
    return NetSpec(ratio, blocks, features)


def _read_bundle(path: Path, z, files: set) -> tuple[dict[int, DSen2Net], dict]:
    with z:
        if "meta" not in files:
            raise InputError(path, "no 'meta' entry: not a bigearth-sr DSen2 weights bundle")
        shape, dtype = _declared(path, z, "meta")
        if shape != () or dtype.kind != "U" or dtype.itemsize > MAX_META_BYTES:
            raise InputError(path, f"'meta' is declared as {dtype} of shape {shape}, not a JSON string of at most "
                                   f"{MAX_META_BYTES >> 20} MiB: refused before reading it")
        try:
            meta = json.loads(str(z["meta"]))
        except (ValueError, json.JSONDecodeError) as e:  # ValueError: an object array, refused unread
            raise InputError(path, f"'meta' is not a JSON string ({e})") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise InputError(path, f"'meta' cannot be read ({type(e).__name__}: {e}): the file is damaged") from None
        if meta.get("format") != FORMAT:
            raise InputError(path, f"format {meta.get('format')!r}, expected {FORMAT!r}")
        nets = {}
        for ratio in (2, 6):
            s = meta.get("nets", {}).get(str(ratio))
            if s is None:
                raise InputError(path, f"no {ratio}x network in the bundle")
            net = DSen2Net(_spec(path, ratio, s))
            state = {}
            for k, ref in net.state_dict().items():
                key = f"net{ratio}.{k}"
                if key not in files:
                    raise InputError(path, f"tensor {key} is missing")
                shape, _ = _declared(path, z, key)  # its size known before numpy allocates it
                if shape != tuple(ref.shape):
                    raise InputError(path, f"tensor {key} has shape {shape}, expected {tuple(ref.shape)}")
                try:
                    a = z[key]
                except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                    # a damaged member: zipfile's own CRC-32 check, or a truncated stream
                    raise InputError(path, f"tensor {key} cannot be read ({type(e).__name__}: {e}): the file is damaged; "
                                           f"copy it again, or retrain") from None
                if a.shape != tuple(ref.shape):
                    raise InputError(path, f"tensor {key} has shape {a.shape}, expected {tuple(ref.shape)}")
                _check_values(path, key, a)
                state[k] = torch.from_numpy(np.asarray(a, np.float32))
            net.load_state_dict(state)
            nets[ratio] = net.eval()
    return nets, meta


def check_state(path, state, net: DSen2Net, what: str = "net") -> None:
    """A network's state as a checkpoint holds it (``sr-train --resume``), checked like a bundle's
    tensors before it is loaded: the same names and shapes as ``net``'s, floating point, finite;
    an InputError naming the file and the tensor."""
    path = Path(path)
    if not isinstance(state, dict):
        raise InputError(path, f"'{what}' is not a network's state")
    want = net.state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        raise InputError(path, f"'{what}' is not this network's state: "
                               + "; ".join(x for x in (missing and f"missing {', '.join(missing[:3])}",
                                                       extra and f"unexpected {', '.join(extra[:3])}") if x))
    for key, ref in want.items():
        t = state[key]
        if not isinstance(t, torch.Tensor):
            raise InputError(path, f"tensor {what}.{key} is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != tuple(ref.shape):
            raise InputError(path, f"tensor {what}.{key} has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
        a = t.detach().cpu()
        _check_values(path, f"{what}.{key}", (a.float() if a.dtype == torch.bfloat16 else a).numpy())  # numpy has no bf16


def _check_values(path: Path, name: str, a: np.ndarray) -> None:
    """A weight tensor must be floating point and finite: NaN weights would write an archive of
    zeros without a word."""
    if a.dtype.kind != "f":
        raise InputError(path, f"tensor {name} is of type {a.dtype}, expected floating point")
    bad = int((~np.isfinite(a)).sum())
    if bad:
        raise InputError(path, f"tensor {name} has {bad} non-finite value(s) (NaN or Inf)")


# --------------------------------------------------------------------------- the authors' Keras files

_CONV_RE = re.compile(r"^conv2d_(\d+)$")


def _keras_convs(f: h5py.File, path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(layer, kernel HWIO, bias) of every Conv2D layer, in the model's layer order.

    Keras 2 ``save_weights`` stores ``layer_names`` as a root attribute and each layer's
    ``weight_names`` (``conv2d_3/kernel:0``, ``conv2d_3/bias:0``) under the layer's group.
    A full-model file keeps the same tree under ``model_weights``.
    """
    root = f["model_weights"] if "model_weights" in f else f
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs.get("layer_names", [])]
    if not names:
        raise InputError(path, "no 'layer_names' attribute: not a Keras weights file")
    convs = []
    for name in names:
        if name not in root:
            raise InputError(path, f"layer {name} is listed in layer_names but has no group")
        g = root[name]
        wnames = [w.decode() if isinstance(w, bytes) else str(w) for w in g.attrs.get("weight_names", [])]
        if not wnames:
            continue  # Input, Concatenate, Activation, Lambda, Add: no weights
        kernel = [w for w in wnames if w.rsplit("/", 1)[-1].startswith("kernel")]
        bias = [w for w in wnames if w.rsplit("/", 1)[-1].startswith("bias")]
        if len(kernel) != 1 or len(bias) != 1:
            raise InputError(path, f"layer {name}: expected one kernel and one bias, found {wnames}")
        k, b = g[kernel[0]], g[bias[0]]
        if not isinstance(k, h5py.Dataset) or not isinstance(b, h5py.Dataset):
            raise InputError(path, f"layer {name}: weights are not datasets")
        for w in (kernel[0], bias[0]):
            _check_values(path, f"{name}/{w.rsplit('/', 1)[-1]}", np.asarray(g[w][()]))
        k, b = np.asarray(k[()], np.float32), np.asarray(b[()], np.float32)
        if k.ndim != 4 or k.shape[:2] != (3, 3):
            raise InputError(path, f"layer {name}: kernel shape {k.shape}, expected a 3x3 convolution (3, 3, in, out)")
        convs.append((name, k, b))
    return convs


def load_keras(path) -> DSen2Net:
    """One of the authors' Keras 2 HDF5 weight files as a network (2x or 6x, N and F read from the
    shapes), with no TensorFlow: h5py reads the tensors, kernels go from HWIO to OIHW."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(path, f"not an HDF5 file ({e})") from None
    with f:
        convs = _keras_convs(f, path)
    if len(convs) < 2 or len(convs) % 2:
        raise InputError(path, f"{len(convs)} convolution layers; DSen2 has 2N + 2 (head, N blocks of two, tail)")
    cin, feats, cout = convs[0][1].shape[2], convs[0][1].shape[3], convs[-1][1].shape[3]
    ratio = {10: 2, 12: 6}.get(cin)
    if ratio is None:
        raise InputError(path, f"layer {convs[0][0]}: {cin} input bands; DSen2 takes 10 (2x) or 12 (6x)")
    net = DSen2Net(NetSpec(ratio, (len(convs) - 2) // 2, feats))
    if cout != net.spec.out_bands:
        raise InputError(path, f"layer {convs[-1][0]}: {cout} output bands, expected {net.spec.out_bands}")
    for (name, k, b), conv in zip(convs, net.convs()):
        want = (conv.in_channels, conv.out_channels)
        if k.shape[2:] != want or b.shape != (conv.out_channels,):
            raise InputError(path, f"layer {name}: kernel {k.shape} / bias {b.shape}, expected (3, 3, {want[0]}, {want[1]}) / ({want[1]},)")
        with torch.no_grad():
            # Keras correlates with kernel[dy, dx, in, out], as torch does with weight[out, in, dy, dx]
            conv.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1)))
            conv.bias.copy_(torch.from_numpy(b))
    return net.eval()


def load(spec: str | None, model: str = "default") -> tuple[dict[int, DSen2Net], dict]:
    """Networks and provenance from ``--sr-weights``: a bundle (.npz), two Keras files joined by a
    comma (the 2x and the 6x network, either order), or None for the shipped ``model``."""
    shipped_path = shipped(model)
    if spec and model != "default":
        raise ValueError(f"give DSen2 weights or a shipped model, not both (weights {spec}, model {model!r})")
    paths = [Path(p) for p in str(spec).split(",")] if spec else [shipped_path]
    for p in paths:
        if not p.is_file():
            raise InputError(p, "DSen2 weights file not found" + (f" (the shipped {model!r} model is missing from this "
                                                                 f"install)" if p == shipped_path else ""))
    files = {p.name: sha256_file(p) for p in paths}
    if len(paths) == 1 and paths[0].suffix.lower() in (".h5", ".hdf5"):
        raise InputError(paths[0], "one Keras file holds one network; give the 2x and the 6x file joined by a comma")
    if len(paths) == 1:
        nets, meta = load_bundle(paths[0])
        # the training curve stays in the bundle; archives and manifests get where the weights came from
        prov = {"source": "bundle", "provenance": {k: v for k, v in meta.get("provenance", {}).items() if k != "history"}}
    else:
        nets = {}
        for p in paths:
            net = load_keras(p)
            if net.spec.ratio in nets:
                raise InputError(p, f"a second {net.spec.ratio}x network; give one 2x and one 6x file")
            nets[net.spec.ratio] = net
        prov = {"source": "keras", "provenance": "Keras 2 weight files of Lanaras et al. 2018 (converted on load)"}
    if not spec:
        prov["model"] = model
    prov.update(files=files, nets={r: {"blocks": n.spec.blocks, "features": n.spec.features} for r, n in nets.items()})
    return nets, prov


def convert(keras_paths: list, out) -> Path:
    """The authors' two Keras files as one bundle (what ``bigearth-sr sr-convert`` writes)."""
    nets, prov = load(",".join(map(str, keras_paths)))
    return save_bundle(out, nets, {"provenance": {"converted_from": prov["files"]}})
