"""shards/writer.py: every sample equals its archive patch, shuffling and balance, determinism, resume."""
from __future__ import annotations

import io
import json

import google_crc32c
import h5py
import numpy as np
import pytest

import shards
from bigearth import nomenclature as nom

from .conftest import SHARD_BYTES, archive_by_name, read_tar


def test_every_sample_equals_its_archive_patch(written):
    path, manifest, sdir, index = written
    recs = archive_by_name(path)
    seen = []
    for split, doc in index["splits"].items():
        assert doc["samples"] == manifest["patches_per_split"][split]
        for e in doc["shards"]:
            samples = read_tar(sdir / e["file"])
            assert len(samples) == e["samples"] and (sdir / e["file"]).stat().st_size == e["bytes"]
            for key, members in samples.items():
                assert sorted(members) == sorted(shards.MEMBERS)
                r = recs[key]
                assert r.split == split
                for m, field in (("super.npy", "data_super"), ("10m.npy", "data_10m"), ("20m.npy", "data_20m"),
                                 ("60m.npy", "data_60m")):
                    a = np.load(io.BytesIO(members[m]))
                    assert a.dtype == getattr(r, field).dtype
                    np.testing.assert_array_equal(a, getattr(r, field))
                lab = json.loads(members["labels.json"])
                assert lab["multi_hot"] == r.classes.tolist() and lab["multi_hot_19"] == r.classes_19.tolist()
                assert lab["names"] == [nom.CLASS_NAMES[i] for i in np.flatnonzero(r.classes)]
                meta = json.loads(members["meta.json"])
                assert {k: meta[k] for k in r.meta()} == r.meta()
                assert meta["crc32c"] == {m: google_crc32c.value(members[m]) for m in shards.MEMBERS if m != "meta.json"}
                # meta.json's own CRC-32C: of its bytes up to the 8 hex digits of its last field
                raw = members["meta.json"]
                cut = raw.rindex(b'"crc32c_meta": "') + len(b'"crc32c_meta": "')
                assert list(meta)[-1] == "crc32c_meta" and raw[cut + 8:] == b'"}'
                assert int(meta["crc32c_meta"], 16) == google_crc32c.value(raw[:cut])
                seen.append(key)
    assert sorted(seen) == sorted(recs) and len(seen) == manifest["patches"] == index["samples"]


def test_shards_shuffled_across_tiles_and_balanced(written):
    path, _, sdir, index = written
    with h5py.File(path) as f:
        order = f["name"].asstr()[:].tolist()
    for doc in index["splits"].values():
        counts = [e["samples"] for e in doc["shards"]]
        assert all(c == 2 for c in counts[:-1]) and 1 <= counts[-1] <= 2
        keys = [k for e in doc["shards"] for k in read_tar(sdir / e["file"])]
        in_archive = [k for k in order if k in set(keys)]
        assert sorted(keys) == sorted(in_archive)
        if len(keys) > 3:
            assert keys != in_archive  # shuffled
    assert index["band_stats"] == json.loads((path.parent / "manifest.json").read_text())["band_stats"]
    assert shards.verify(sdir) == []


def test_same_seed_same_bytes_other_seed_other_order(written, tmp_path):
    path, _, _, index = written
    again = shards.write_shards(path, tmp_path / "a", SHARD_BYTES, seed=7, progress=False, workers=2)
    assert again["splits"] == index["splits"]  # sha256 of every shard included
    other = shards.write_shards(path, tmp_path / "b", SHARD_BYTES, seed=8, progress=False)
    assert other["splits"] != index["splits"]


@pytest.mark.parametrize("how", ["finished", "killed"])
def test_rewrite_resumes_and_skips_finished_shards(written, tmp_path, monkeypatch, how):
    """A rerun rewrites only what is missing: after a finished run from the index's fingerprints
    (a finished run leaves no .progress/ or .lock behind), after a killed one from the markers."""
    path, _, _, index = written
    out = tmp_path / "s"
    if how == "killed":  # the markers as a run killed before its index leaves them
        monkeypatch.setattr(shards.writer.shutil, "rmtree", lambda *a, **k: None)
    shards.write_shards(path, out, SHARD_BYTES, seed=7, progress=False)
    monkeypatch.undo()
    assert (out / ".progress").is_dir() == (how == "killed")
    assert not (out / ".lock").exists()
    files = sorted(out.glob("*.tar"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    files[0].unlink()  # as if killed before this shard was renamed into place
    (out / (files[0].name + ".tmp")).write_bytes(b"partial")
    if how == "killed":
        (out / "index.json").unlink()
    again = shards.write_shards(path, out, SHARD_BYTES, seed=7, progress=False)
    assert again["splits"] == index["splits"]
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in files[1:])
    assert files[0].exists() and files[0].stat().st_mtime_ns != mtimes[files[0]]
    assert not list(out.glob("*.tmp"))
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.json", "croissant.json", *(p.name for p in files)])


def test_meta_json_catches_any_changed_byte(written):
    """Every single-byte change of a sample's meta.json is refused by the readers' check, names
    and checksum fields alike, before the JSON is used."""
    from shards.sample import SampleError, check

    _, _, sdir, index = written
    key, members = next(iter(read_tar(sdir / index["splits"]["train"]["shards"][0]["file"]).items()))
    sample = {"__key__": key, **members}
    assert check(sample)["name"] == key
    raw = members["meta.json"]
    for i in range(len(raw)):
        changed = bytearray(raw)
        changed[i] ^= 0x01
        with pytest.raises(SampleError, match="meta.json fails its CRC-32C"):
            check({**sample, "meta.json": bytes(changed)})
    at = raw.index(b'"product": "') + len(b'"product": "')
    edited = raw[:at] + b"X" + raw[at + 1:]
    assert check({**sample, "meta.json": edited}, verify=False)["product"].startswith("X")  # unchecked: as it is


def test_the_disk_check_foresees_what_the_shards_take(written):
    """``shards_bytes`` (what the free space is compared with before writing) is within 1 % of
    what the shards written from the same plan take."""
    from shards.writer import plan, shards_bytes

    from .conftest import SHARD_BYTES

    arch, _, _, index = written
    need, n = shards_bytes(arch, plan(arch, SHARD_BYTES, seed=7))
    total = sum(d["bytes"] for d in index["splits"].values())
    assert abs(need - total) <= 0.01 * total, (need, total)
    assert n == index["samples"]
