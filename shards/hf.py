"""Hugging Face ``datasets`` reading the shards: the features of a sample, declared.

``load_dataset("webdataset", ...)`` infers a ``.npy`` member as a list of lists of lists, which
it then hands back as nested Python lists; declared as ``Array3D`` the same member comes back as
one array (measured: about 10x the samples/s, ``benchmarks/RESULTS.md``). The declaration is
derived from the record's definition, as the shard writer's members are."""
from __future__ import annotations

from bigearth.record import ARRAYS, META_FIELDS

from .sample import MEMBERS, NPY_MEMBERS, SELF_KEY, SHARD_KEY


def hf_features():
    """The ``datasets.Features`` of one shard sample: every ``.npy`` member an ``Array3D`` of its
    shape and dtype, ``labels.json`` and ``meta.json`` as the writer lays them out.

    ``load_dataset("webdataset", data_files=..., features=shards.hf_features())`` then
    ``.with_format("numpy")`` gives arrays (of int64: datasets' numpy format widens integers).
    """
    import datasets
    seq = getattr(datasets, "List", None) or datasets.Sequence  # datasets >= 4: List; 3: Sequence
    value = datasets.Value

    def scalar(kind: str):
        return value("string") if kind == "str" else value("int64") if kind.startswith(("int", "uint")) \
            else value("float64")
    meta = {k: (seq(scalar(kind)) if shape else scalar(kind)) for k, (kind, shape) in META_FIELDS.items()}
    meta[SHARD_KEY] = value("string")
    meta["crc32c"] = {m: value("int64") for m in MEMBERS if m != "meta.json"}
    meta[SELF_KEY] = value("string")
    feats = {"__key__": value("string"), "__url__": value("string")}
    feats.update({m: datasets.Array3D(ARRAYS[key][0], ARRAYS[key][1]) for m, key in NPY_MEMBERS.items()})
    feats["labels.json"] = {"names": seq(value("string")), "names_19": seq(value("string")),
                            "multi_hot": seq(value("int64")), "multi_hot_19": seq(value("int64"))}
    feats["meta.json"] = meta
    return datasets.Features(feats)
