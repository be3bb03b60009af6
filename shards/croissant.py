"""``croissant.json`` beside a shards folder's ``index.json``: the shards described in Croissant
1.1 (MLCommons), the metadata Hugging Face, Kaggle and the ML venues' dataset tracks read: the
dataset's name, licence and citation, every shard with its sha256, and one record set per split
whose fields are the sample's members (arrays with dtype and shape, labels, metadata).

Written here as JSON-LD, from the index alone (no dependency for writing it); the tests validate
it with ``mlcroissant`` (the ``tfds`` extra), which must report no error and no warning.
"""
from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

from bigearth.files import write_text

CROISSANT_NAME = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
# the licence of what the shards are made from: Sentinel-2 data are free and open under the
# Copernicus legal notice (CORINE Land Cover likewise); BigEarthNet v1 and v2 are CDLA-Permissive-1.0
LICENCE_SENTINEL = "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice"
LICENCE_BIGEARTHNET = "https://cdla.dev/permissive-1-0/"
CITATION = ("@article{sedona2019remote, title={Remote Sensing Big Data Classification with High Performance "
            "Distributed Deep Learning}, author={Sedona, Rocco and Cavallaro, Gabriele and Jitsev, Jenia and Strube, "
            "Alexandre and Riedel, Morris and Benediktsson, J{\\'o}n Atli}, journal={Remote Sensing}, volume={11}, "
            "number={24}, pages={3056}, year={2019}, doi={10.3390/rs11243056}}")
URL = "https://doi.org/10.3390/rs11243056"
# the sample's members: (field, member, data type, array shape or None, description)
MEMBERS = (
    ("super", "super.npy", "cr:UInt16", "12,120,120",
     "data_super: the 12 bands (B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12) at 10 m, reflectance x 10000"),
    ("native_10m", "10m.npy", "cr:UInt16", "4,120,120", "data_10m: B02 B03 B04 B08 at 10 m, as the product holds them"),
    ("native_20m", "20m.npy", "cr:UInt16", "6,60,60", "data_20m: B05 B06 B07 B8A B11 B12 at 20 m"),
    ("native_60m", "60m.npy", "cr:UInt16", "2,20,20", "data_60m: B01 B09 at 60 m"),
)
_CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "examples": {"@id": "cr:examples", "@type": "@json"},
    "equivalentProperty": "cr:equivalentProperty", "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated",
    "replace": "cr:replace", "samplingRate": "cr:samplingRate", "separator": "cr:separator", "source": "cr:source",
    "subField": "cr:subField", "transform": "cr:transform",
}


def _source(file_set: str, prop: str | None = None, json_path: str | None = None, regex: str | None = None) -> dict:
    extract = {"fileProperty": prop} if prop else {"jsonPath": json_path}
    src = {"fileSet": {"@id": file_set}, "extract": extract}
    if regex:
        src["transform"] = {"regex": regex}
    return src


def document(index: dict, from_bigearthnet: bool, published: datetime.date | None = None) -> dict:
    """The Croissant JSON-LD of the shards ``index`` describes."""
    published = published or datetime.datetime.now(datetime.timezone.utc).date()
    dist: list[dict] = []
    record_sets: list[dict] = []
    for split, doc in index["splits"].items():
        files = [e["file"] for e in doc["shards"]]
        dist += [{"@type": "cr:FileObject", "@id": e["file"], "name": e["file"], "contentUrl": e["file"],
                  "contentSize": f"{e['bytes']} B", "encodingFormat": "application/x-tar", "sha256": e["sha256"]}
                 for e in doc["shards"]]
        contained = [{"@id": f} for f in files]
        sets = {m: f"{split}/{m}" for _, m, _, _, _ in MEMBERS} | {"labels.json": f"{split}/labels.json",
                                                                    "meta.json": f"{split}/meta.json"}
        for member, set_id in sets.items():
            dist.append({"@type": "cr:FileSet", "@id": set_id, "name": set_id, "containedIn": contained,
                         "encodingFormat": "application/json" if member.endswith(".json") else "application/x-npy",
                         "includes": f"*.{member}"})
        # one record set per member, keyed by the patch name: a sample is the records of one name
        def name_field(rs: str, member: str) -> dict:
            return {"@type": "cr:Field", "@id": f"{rs}/name", "name": "name", "dataType": "sc:Text",
                    "description": "the BigEarthNet patch name, <product>_<x>_<y>: the sample's key",
                    "source": _source(sets[member], "filename", regex=rf"^(.*)\.{re.escape(member)}$")}

        def record_set(rs: str, member: str, fields: list[dict], text: str) -> dict:
            return {"@type": "cr:RecordSet", "@id": rs, "name": rs, "key": {"@id": f"{rs}/name"},
                    "description": f"{text}; split {split}: {doc['samples']} samples in {len(files)} shard(s)",
                    "field": [name_field(rs, member), *fields]}

        for field, member, dtype, shape, text in MEMBERS:
            rs = f"{split}/{field}"
            record_sets.append(record_set(rs, member, [
                {"@type": "cr:Field", "@id": f"{rs}/{field}", "name": field, "dataType": dtype, "cr:isArray": True,
                 "cr:arrayShape": shape, "description": f"{text} (.npy, uint16)",
                 "source": _source(sets[member], "content")}], f"<name>.{member}"))
        rs = f"{split}/labels"
        record_sets.append(record_set(rs, "labels.json", [
            {"@type": "cr:Field", "@id": f"{rs}/{field}", "name": field, "dataType": dtype, "cr:isArray": True,
             "cr:arrayShape": n, "description": text, "source": _source(sets["labels.json"], json_path=path)}
            for field, path, dtype, n, text in (
                ("names", "$.names", "sc:Text", "-1", "CORINE class names (43-class nomenclature)"),
                ("names_19", "$.names_19", "sc:Text", "-1", "class names of the 19-class nomenclature"),
                ("multi_hot", "$.multi_hot", "cr:UInt8", str(len(index["class_names"])), "43 classes, multi-hot"),
                ("multi_hot_19", "$.multi_hot_19", "cr:UInt8", str(len(index["class_names_19"])),
                 "19 classes, multi-hot"))], "<name>.labels.json"))
        rs = f"{split}/meta"
        meta_fields = [{"@type": "cr:Field", "@id": f"{rs}/{field}", "name": field, "dataType": dtype,
                        "description": text, "source": _source(sets["meta.json"], json_path=path)}
                       for field, path, dtype, text in (("product", "$.product", "sc:Text", "the Sentinel-2 product"),
                                                        ("tile", "$.tile", "sc:Text", "the MGRS tile"),
                                                        ("date", "$.date", "sc:Text", "acquisition time, ISO 8601"),
                                                        ("crs", "$.crs", "sc:Text", "the patch's native CRS"),
                                                        ("x", "$.x", "sc:Integer", "grid column in its tile"),
                                                        ("y", "$.y", "sc:Integer", "grid row in its tile"))]
        meta_fields.append({"@type": "cr:Field", "@id": f"{rs}/bounds", "name": "bounds", "dataType": "sc:Float",
                            "cr:isArray": True, "cr:arrayShape": "4", "description": "ulx, uly, lrx, lry, native CRS",
                            "source": _source(sets["meta.json"], json_path="$.bounds")})
        record_sets.append(record_set(rs, "meta.json", meta_fields, "<name>.meta.json"))
    source = "BigEarthNet patches" if from_bigearthnet else "Sentinel-2 Level-2A products"
    return {
        "@context": _CONTEXT, "@type": "sc:Dataset", "name": "bigearth_sr",
        "description": (f"BigEarthNet-style 120 x 120 patches of {source}: all 12 bands super-resolved to 10 m "
                        f"(data_super) beside the native 10, 20 and 60 m cubes, 43 CORINE and 19 BigEarthNet labels, "
                        f"as WebDataset tar shards written by bigearth-sr {index.get('version', '')}; "
                        f"{index['samples']} samples"),
        "conformsTo": CONFORMS_TO, "citeAs": CITATION, "url": URL,
        "license": LICENCE_BIGEARTHNET if from_bigearthnet else LICENCE_SENTINEL,
        "version": "1.0.0", "datePublished": published.isoformat(),
        "keywords": ["remote sensing", "Sentinel-2", "BigEarthNet", "super-resolution", "multi-label classification"],
        "creator": {"@type": "sc:Organization", "name": "bigearth-sr"},
        "distribution": dist, "recordSet": record_sets,
    }


def write(out_dir, index: dict, from_bigearthnet: bool) -> Path:
    """Write ``croissant.json`` atomically beside the index."""
    path = Path(out_dir) / CROISSANT_NAME
    write_text(path, json.dumps(document(index, from_bigearthnet), indent=1))
    return path
