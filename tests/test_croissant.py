"""shards/croissant.py: croissant.json beside the index, validated by mlcroissant without an error
or a warning, its files and fields against the shards themselves."""
from __future__ import annotations

import hashlib
import io
import json
import logging

import numpy as np
import pytest

from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build
from shards import croissant
from shards.writer import write_shards

from .conftest import fixtures_dir, read_tar


def _validate(path, caplog) -> None:
    mlc = pytest.importorskip("mlcroissant")
    with caplog.at_level(logging.WARNING):
        ds = mlc.Dataset(jsonld=str(path))
    issues = ds.metadata.ctx.issues
    assert not issues.errors and not issues.warnings, issues.report()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]


def test_written_beside_the_index_and_valid(written, caplog):
    _, _, sdir, index = written
    path = sdir / croissant.CROISSANT_NAME
    doc = json.loads(path.read_text())
    _validate(path, caplog)
    assert doc["conformsTo"] == croissant.CONFORMS_TO and doc["license"] == croissant.LICENCE_SENTINEL
    assert "Sedona" in doc["citeAs"] and doc["name"] == "bigearth_sr"
    files = {d["@id"]: d for d in doc["distribution"] if d["@type"] == "cr:FileObject"}
    listed = {e["file"] for d in index["splits"].values() for e in d["shards"]}
    assert set(files) == listed
    for name, d in files.items():
        data = (sdir / name).read_bytes()
        assert d["sha256"] == hashlib.sha256(data).hexdigest() and d["contentSize"] == f"{len(data)} B"
    sets = {r["@id"]: r for r in doc["recordSet"]}
    assert set(sets) == {f"{s}/{m}" for s in index["splits"] for m in
                         ("super", "native_10m", "native_20m", "native_60m", "labels", "meta")}
    # the declared arrays are what the shards hold (read with numpy from the tar, independently)
    first = sorted(listed)[0]
    sample = next(iter(read_tar(sdir / first).values()))
    split = next(s for s, d in index["splits"].items() if any(e["file"] == first for e in d["shards"]))
    for field, member, dtype, shape, _ in croissant.MEMBERS:
        a = np.load(io.BytesIO(sample[member]))
        (f,) = [f for f in sets[f"{split}/{field}"]["field"] if f["name"] == field]
        assert f["cr:arrayShape"] == ",".join(map(str, a.shape)) and a.dtype == np.uint16 and dtype == "cr:UInt16"
    labels = json.loads(sample["labels.json"])
    hot = {f["name"]: f for f in sets[f"{split}/labels"]["field"]}
    assert hot["multi_hot"]["cr:arrayShape"] == str(len(labels["multi_hot"])) == "43"
    assert hot["multi_hot_19"]["cr:arrayShape"] == str(len(labels["multi_hot_19"])) == "19"


def test_bigearthnet_shards_carry_its_licence(tmp_path, caplog):
    src = fixtures_dir("bigearthnet-v1")
    lists = fixtures_dir("bigearthnet-lists")
    build([src], BuildConfig(upsampling="bilinear", out_dir=str(tmp_path / "b"), official_lists=str(lists), progress=False))
    write_shards(tmp_path / "b" / ARCHIVE_NAME, tmp_path / "s", progress=False)
    doc = json.loads((tmp_path / "s" / croissant.CROISSANT_NAME).read_text())
    assert doc["license"] == croissant.LICENCE_BIGEARTHNET and "BigEarthNet patches" in doc["description"]
    _validate(tmp_path / "s" / croissant.CROISSANT_NAME, caplog)
