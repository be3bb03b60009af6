"""A patch record as a WebDataset sample: one member per field, keyed by extension.

``<name>.super.npy`` ``<name>.10m.npy`` ``<name>.20m.npy`` ``<name>.60m.npy`` are the four cubes
as standard ``.npy`` (uint16, bands first), so any reader decodes them (``numpy.load``,
webdataset's and Hugging Face's ``npy`` decoders); ``<name>.labels.json`` holds the 43- and
19-class names and multi-hot vectors; ``<name>.meta.json`` the georeference and provenance,
plus the fingerprint of the shard it was written into (``shard``: the index lists it, so a reader
tells a sample of another build's same-named shard from its own as it reads it), a CRC-32C of
every other member and, as its last field, of itself (``crc32c_meta``): tar
checksums cover headers only, so without them a flipped byte would go unnoticed. CRC-32C (Castagnoli, as TFRecord and GCS use)
runs on the CPU's CRC instruction at ~28 GB/s here, against ~4 GB/s for zlib's CRC-32,
which would cost the reader a third of its speed (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import functools
import io
import json

import numpy as np
from crc32c import crc32c

from bigearth import nomenclature as nom
from bigearth.record import ARRAYS, PatchRecord

# one .npy member per image cube of the record: data_super -> super.npy, data_10m -> 10m.npy, ...
NPY_MEMBERS = {f"{k.removeprefix('data_')}.npy": k for k, (shape, _) in ARRAYS.items() if len(shape) == 3}
MEMBERS = (*NPY_MEMBERS, "labels.json", "meta.json")
SHARD_KEY = "shard"  # meta.json: the fingerprint of the shard the sample was written into


class SampleError(ValueError):
    """A sample whose members are missing, undecodable or fail their checksum."""


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


@functools.lru_cache(maxsize=64)
def _npy_header(head: bytes) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of an ``.npy`` preamble; cached, as every sample of a member
    shares one header (parsing it costs an ``ast.literal_eval``)."""
    buf = io.BytesIO(head)
    version = np.lib.format.read_magic(buf)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(buf)
    if fortran or dtype.hasobject:
        raise SampleError("npy member is Fortran-ordered or holds objects")
    return shape, dtype, buf.tell()


def npy_array(data: bytes | bytearray) -> np.ndarray:
    """Decode ``.npy`` bytes without copying (a view of ``data``, writable if ``data`` is)."""
    if len(data) < 10 or data[:6] != b"\x93NUMPY":
        raise SampleError("npy member does not start with the NumPy magic string")
    hlen = data[8] | data[9] << 8 if data[6] == 1 else int.from_bytes(data[8:12], "little")
    start = 10 + hlen if data[6] == 1 else 12 + hlen
    try:
        shape, dtype, off = _npy_header(bytes(data[:start]))
    except ValueError as e:
        raise SampleError(f"npy member header is malformed ({e})") from None
    n = int(np.prod(shape))
    if len(data) - off != n * dtype.itemsize:
        raise SampleError(f"npy member holds {len(data) - off} data bytes, its header says {n * dtype.itemsize}")
    return np.frombuffer(data, dtype, count=n, offset=off).reshape(shape)


def labels_doc(classes: np.ndarray, classes_19: np.ndarray) -> dict:
    return {"names": nom.names_of(classes), "names_19": nom.names_of(classes_19, nom.CLASS_NAMES_19),
            "multi_hot": [int(v) for v in classes], "multi_hot_19": [int(v) for v in classes_19]}


def encode(rec: PatchRecord, shard: str | None = None) -> dict:
    """PatchRecord -> ``{"__key__": name, member: bytes, ...}``; ``shard``: the fingerprint of the
    shard it goes into, kept in ``meta.json``."""
    members = {m: npy_bytes(getattr(rec, key)) for m, key in NPY_MEMBERS.items()}
    members["labels.json"] = json.dumps(labels_doc(rec.classes, rec.classes_19)).encode()
    meta = rec.meta()
    if shard is not None:
        meta[SHARD_KEY] = shard
    meta["crc32c"] = {m: crc32c(b) for m, b in members.items()}
    members["meta.json"] = sealed_json(meta)
    return {"__key__": rec.name, **members}


# meta.json checks itself: its last key holds the CRC-32C of every byte before that value, as 8
# hex digits, so the raw bytes are checked with no second serialisation (any JSON reader still
# reads the file as it is; the key is one more field)
SELF_KEY = "crc32c_meta"
_SEAL_TAIL = len('xxxxxxxx"}')


def sealed_json(doc: dict) -> bytes:
    """``doc`` as JSON text whose last field is the CRC-32C of the text before its value."""
    body = json.dumps(doc).encode()[:-1] + f', "{SELF_KEY}": "'.encode()
    return body + f"{crc32c(body):08x}\"}}".encode()


def sealed_ok(data: bytes) -> bool:
    """Whether ``data`` is ``sealed_json`` output whose bytes are intact."""
    body, tail = data[:-_SEAL_TAIL], data[-_SEAL_TAIL:]
    if not body.endswith(f'"{SELF_KEY}": "'.encode()) or tail[-2:] != b'"}':
        return False
    try:
        return int(tail[:8], 16) == crc32c(body)
    except ValueError:
        return False


def shard_mark(fingerprint: str) -> bytes:
    """The bytes ``meta.json`` holds when its sample was written into the shard of ``fingerprint``
    (``json.dumps``'s own spelling of the field: a reader looks for them without parsing)."""
    return json.dumps({SHARD_KEY: fingerprint})[1:-1].encode()


def tar_bytes(sample: dict) -> int:
    """Bytes a sample takes in a tar: a 512-byte header per member, data padded to 512."""
    return sum(512 + -(-len(v) // 512) * 512 for k, v in sample.items() if not k.startswith("__"))


def check(sample: dict, members=MEMBERS, verify: bool = True) -> dict:
    """Check ``meta.json`` (its own CRC-32C, with ``verify``), parse it and check the members
    needed; returns the meta dict (the checksum fields included)."""
    missing = [m for m in ("meta.json", *members) if m not in sample]
    if missing:
        raise SampleError(f"sample {sample.get('__key__')!r} lacks member(s) {', '.join(missing)}")
    if verify and not sealed_ok(sample["meta.json"]):  # before it is parsed: its names are returned as they are
        raise SampleError(f"sample {sample['__key__']!r}: meta.json fails its CRC-32C (corrupted bytes"
                          + ("" if f'"{SELF_KEY}"'.encode() in sample["meta.json"] else
                             ", or written before meta.json carried one: rewrite the shards with `bigearth-sr shards`")
                          + ")")
    try:
        meta = json.loads(sample["meta.json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SampleError(f"sample {sample['__key__']!r}: meta.json is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise SampleError(f"sample {sample['__key__']!r}: meta.json is not an object")
    if meta.get("name") != sample["__key__"]:
        raise SampleError(f"sample {sample['__key__']!r}: meta.json names {meta.get('name')!r}")
    if verify:
        crc = meta.get("crc32c", {})
        for m in members:
            if m != "meta.json" and crc32c(sample[m]) != crc.get(m):
                raise SampleError(f"sample {sample['__key__']!r}: {m} fails its CRC-32C (corrupted bytes)")
    return meta


def decode_array(sample: dict, member: str) -> np.ndarray:
    key = NPY_MEMBERS[member]
    shape, dtype = ARRAYS[key]
    a = npy_array(sample[member])
    if a.shape != shape or a.dtype != np.dtype(dtype):
        raise SampleError(f"sample {sample['__key__']!r}: {member} is {a.dtype}{a.shape}, expected {dtype}{shape}")
    return a


def decode_labels(sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """(43-class, 19-class) multi-hot vectors of ``labels.json``; a damaged member is a SampleError."""
    try:
        doc = json.loads(sample["labels.json"])
        c43, c19 = np.asarray(doc["multi_hot"], np.uint8), np.asarray(doc["multi_hot_19"], np.uint8)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SampleError(f"sample {sample.get('__key__')!r}: labels.json is damaged ({type(e).__name__}: {e})") from None
    if c43.shape != (nom.NUM_CLASSES,) or c19.shape != (nom.NUM_CLASSES_19,):
        raise SampleError(f"sample {sample.get('__key__')!r}: labels.json holds {c43.shape} and {c19.shape} "
                          f"multi-hot vectors, expected ({nom.NUM_CLASSES},) and ({nom.NUM_CLASSES_19},)")
    return c43, c19


def decode(sample: dict, verify: bool = True) -> PatchRecord:
    """A whole sample back to the PatchRecord it was written from."""
    meta = check(sample, MEMBERS, verify)
    classes, classes_19 = decode_labels(sample)
    arrays = {key: decode_array(sample, m).copy() for m, key in NPY_MEMBERS.items()}
    return PatchRecord.from_fields(meta, {**arrays, "classes": classes, "classes_19": classes_19})
