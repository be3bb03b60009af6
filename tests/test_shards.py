"""WebDataset shards: round trip against the archive, partitions across ranks and workers,
resume, corruption, the CLI and the README snippets."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import google_crc32c
import h5py
import numpy as np
import pytest
import torch

import shards
from bigearth import nomenclature as nom
from bigearth.record import BANDS_SUPER
from dataset_builder import archive
from dataset_builder.build import ARCHIVE_NAME

from .conftest import ROOT

SHARD_BYTES = 1_100_000  # two samples per shard


@pytest.fixture(scope="module")
def written(built, tmp_path_factory):
    out, manifest, _ = built
    sdir = tmp_path_factory.mktemp("shards")
    index = shards.write_shards(out / ARCHIVE_NAME, sdir, SHARD_BYTES, seed=7, progress=False)
    return out / ARCHIVE_NAME, manifest, sdir, index


def archive_by_name(path) -> dict:
    return {r.name: r for r in archive.iter_records(path)}


def read_tar(path) -> dict[str, dict[str, bytes]]:
    """Independent of the reader: Python's tarfile, members grouped by the name before the first dot."""
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            key, ext = m.name.split(".", 1)
            out.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return out


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


def test_reader_equals_archive_all_variants(written):
    path, _, sdir, index = written
    recs = archive_by_name(path)
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    rgb = [BANDS_SUPER.index(b) for b in ("B04", "B03", "B02")]
    got = {}
    for x, y, meta in shards.load(sdir, split, shuffle=0, normalize=False, with_meta=True):
        r = recs[meta["name"]]
        assert x.dtype == torch.uint16
        np.testing.assert_array_equal(x.numpy(), r.data_super)
        np.testing.assert_array_equal(y.numpy(), r.classes.astype(np.float32))
        assert meta == r.meta()
        got[meta["name"]] = 1
    assert len(got) == index["splits"][split]["samples"]
    for x, y, meta in shards.load(sdir, split, variant="rgb", labels=19, shuffle=0, normalize=False, with_meta=True):
        r = recs[meta["name"]]
        np.testing.assert_array_equal(x.numpy(), r.data_super[rgb])
        np.testing.assert_array_equal(y.numpy(), r.classes_19)
    for x, y, meta in shards.load(sdir, split, variant="native", shuffle=0, normalize=False, with_meta=True):
        r = recs[meta["name"]]
        for k in ("10m", "20m", "60m"):
            np.testing.assert_array_equal(x[k].numpy(), getattr(r, f"data_{k}"))


def test_normalisation_uses_the_archive_statistics(written):
    path, _, sdir, index = written
    with h5py.File(path) as f:
        cube = f["data_super"][:].astype(np.float64)
        names = f["name"].asstr()[:].tolist()
        train = f["split"].asstr()[:] == "train"
    # independent of the manifest: the training patches' statistics
    mean, std = cube[train].mean(axis=(0, 2, 3)), cube[train].std(axis=(0, 2, 3))
    split = next(iter(index["splits"]))
    raw = {}
    for x, y, meta in shards.load(sdir, split, shuffle=0, normalize=False, with_meta=True):
        raw[meta["name"]] = x
    for x, y, meta in shards.load(sdir, split, shuffle=0, with_meta=True, batch_size=3):
        assert x.dtype == torch.float32 and x.shape[1:] == (12, 120, 120) and y.shape[1:] == (43,)
        for xi, m in zip(x, meta):
            expect = (cube[names.index(m["name"])] - mean[:, None, None]) / std[:, None, None]
            np.testing.assert_allclose(xi.numpy(), expect, rtol=1e-4, atol=1e-3)
            gpu_style = shards.Normalizer(index)(raw[m["name"]][None])[0]
            torch.testing.assert_close(gpu_style, xi, rtol=1e-5, atol=1e-5)


def _keys_of(sdir, split, rank, world, workers, **kw):
    ds = shards.load(sdir, split, rank=rank, world=world, with_meta=True, normalize=False, **kw)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    return [m["name"] for _, _, m in dl]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_an_epoch_over_ranks_and_workers_is_the_split_once_with_equal_shares(written, world, tmp_path):
    """Without replacement: for every world and worker count, the keys of one epoch over all
    ranks are the split, each once, plus at most world - 1 repeats (padding), and every rank
    gets the same number of samples and batches (the shards hold unequal counts)."""
    sdir = tmp_path / "three"
    index = shards.write_shards(written[0], sdir, int(SHARD_BYTES * 1.5), progress=False)  # three per shard
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    counts = [e["samples"] for e in index["splits"][split]["shards"]]
    assert len(set(counts)) > 1  # the last shard is smaller: the case that needed replacement before
    n = index["splits"][split]["samples"]
    for workers in (1, 2, 3):
        per_rank = [_keys_of(sdir, split, r, world, workers, shuffle=50, seed=3) for r in range(world)]
        flat = [k for ks in per_rank for k in ks]
        assert set(flat) == set(_keys_of(sdir, split, 0, 1, 0, shuffle=0))
        assert len(flat) - n == (-n) % world <= world - 1  # the repeats: padding only
        assert {len(ks) for ks in per_rank} == {-(-n // world)}
        ds = shards.load(sdir, split, rank=0, world=world)
        assert ds.samples_this_rank() == len(per_rank[0])
        for r in range(world):
            dl = shards.loader(sdir, split, batch_size=4, num_workers=workers, rank=r, world=world, shuffle=0)
            assert len(list(dl)) == dl.dataset.batches_this_rank(4, workers)


def test_epochs_reshuffle_and_resampled_epoch_length(written):
    _, _, sdir, index = written
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    n = index["splits"][split]["samples"]
    ds = shards.load(sdir, split, with_meta=True, normalize=False, shuffle=20)
    order = lambda: [m["name"] for _, _, m in ds]  # noqa: E731
    a, b = order(), order()
    assert a == b  # same epoch, same order
    ds.set_epoch(1)
    c = order()
    assert sorted(c) == sorted(a) and c != a
    for world in (1, 2):
        for workers in (0, 2):
            dl = shards.loader(sdir, split, batch_size=3, num_workers=workers, resampled=True, rank=0, world=world)
            sizes = [len(x) for x, _ in dl]
            assert sum(sizes) == -(-n // world) == dl.dataset.samples_this_rank()


def test_rewrite_resumes_and_skips_finished_shards(written, tmp_path):
    path, _, _, index = written
    out = tmp_path / "s"
    shards.write_shards(path, out, SHARD_BYTES, seed=7, progress=False)
    files = sorted(out.glob("*.tar"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    files[0].unlink()  # as if killed before this shard was renamed into place
    (out / (files[0].name + ".tmp")).write_bytes(b"partial")
    (out / "index.json").unlink()
    again = shards.write_shards(path, out, SHARD_BYTES, seed=7, progress=False)
    assert again["splits"] == index["splits"]
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in files[1:])
    assert not list(out.glob("*.tmp"))


def _corrupt_copy(sdir, tmp_path, how):
    import shutil
    out = tmp_path / how
    shutil.copytree(sdir, out)
    index = json.loads((out / "index.json").read_text())
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    victim = out / index["splits"][split]["shards"][0]["file"]
    data = bytearray(victim.read_bytes())
    with tarfile.open(victim) as tf:
        members = tf.getmembers()
    if how == "truncated":  # in the middle of the second sample's super.npy
        second = [m for m in members if m.name.endswith("super.npy")][1]
        data = data[:second.offset_data + 1000]
    elif how == "boundary":  # clean cut after the first sample's 10m.npy member
        m = next(m for m in members if m.name.endswith("10m.npy"))
        data = data[:m.offset_data + -(-m.size // 512) * 512]
    elif how == "flipped":  # one byte inside the first sample's super.npy pixels
        m = next(m for m in members if m.name.endswith("super.npy"))
        data[m.offset_data + 5000] ^= 0xFF
    victim.write_bytes(bytes(data))
    return out, split, victim, index["splits"][split]["samples"]


@pytest.mark.parametrize("how,lost", [("truncated", 1), ("boundary", 2), ("flipped", 1)])
def test_corrupt_shard_raises_with_shard_and_offset_or_is_skipped_and_counted(written, tmp_path, how, lost):
    _, _, sdir, _ = written
    out, split, victim, n = _corrupt_copy(sdir, tmp_path, how)
    with pytest.raises(shards.ShardError, match=rf"{re.escape(victim.name)}.*byte offset \d+"):
        for _ in shards.load(out, split, shuffle=0):
            pass
    ds = shards.load(out, split, shuffle=0, on_error="skip")
    got = sum(1 for _ in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert got == n - lost
    assert ds.skipped.samples == lost and ds.skipped.shards == (0 if how == "flipped" else 1)
    assert any(victim.name in p for p in shards.verify(out))


def test_cli_shards_and_verify(written, tmp_path):
    path, _, _, index = written
    exe = Path(sys.executable).with_name("bigearth-sr")
    out = tmp_path / "cli"
    r = subprocess.run([str(exe), "shards", str(path), "--out", str(out), "--shard-size", "1.1MB", "--shard-seed", "7",
                        "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "index.json").read_text())["splits"] == index["splits"]
    assert subprocess.run([str(exe), "verify-shards", str(out)], capture_output=True).returncode == 0
    victim = next(out.glob("*.tar"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    r = subprocess.run([str(exe), "verify-shards", str(out)], capture_output=True, text=True)
    assert r.returncode == 1 and victim.name in r.stdout


def _snippet(name: str, shards_dir: Path) -> str:
    readme = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- snippet: {name} -->\n```python\n(.*?)```", readme, re.S)
    assert m, f"README snippet {name} not found"
    return m.group(1).replace("out/demo/shards", str(shards_dir))


def test_readme_snippet_plain_webdataset(written):
    path, _, sdir, index = written
    ns: dict = {}
    code = _snippet("webdataset", sdir) + "\n    seen.append((sample['__key__'], x, names, tile))\n"
    exec(code.replace("for sample in ds:", "seen = []\nfor sample in ds:"), ns)
    recs = archive_by_name(path)
    assert len(ns["seen"]) == index["splits"]["train"]["samples"]
    for key, x, names, tile in ns["seen"]:
        np.testing.assert_array_equal(x, recs[key].data_super)
        assert names == nom.names_of(recs[key].classes) and tile == recs[key].tile


def test_readme_snippet_hugging_face_datasets(written, tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    path, _, sdir, index = written
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ns: dict = {}
    exec(_snippet("hf", sdir), ns)
    ds = ns["ds"]
    assert len(ds) == index["splits"]["train"]["samples"]
    r = archive_by_name(path)[ds[0]["__key__"]]
    np.testing.assert_array_equal(ns["x"], r.data_super)
    np.testing.assert_array_equal(ns["y"], r.classes)


def test_bad_arguments_are_named(written, tmp_path):
    _, _, sdir, _ = written
    with pytest.raises(KeyError, match="split 'nope'"):
        shards.load(sdir, "nope")
    with pytest.raises(ValueError, match="variant"):
        shards.load(sdir, "train", variant="nir")
    with pytest.raises(FileNotFoundError, match="shard index is missing"):
        shards.load(tmp_path, "train")
    (tmp_path / "index.json").write_text("{")
    with pytest.raises(ValueError, match="index.json: malformed shard index"):
        shards.load(tmp_path, "train")
    with pytest.raises(ValueError, match="must be a size such as"):
        shards.parse_size("lots")
    assert shards.parse_size("1.5GiB") == int(1.5 * 2**30) and shards.parse_size("256MB") == 256 * 10**6


@pytest.mark.parametrize("env", [{"RANK": "1", "WORLD_SIZE": "3"}, {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "3"},
                                 {"SLURM_PROCID": "1", "SLURM_NTASKS": "3"}, {"HOROVOD_RANK": "1", "HOROVOD_SIZE": "3"}])
def test_rank_and_world_come_from_the_launcher(written, monkeypatch, env):
    from bigearth.distinfo import _ENV, rank_world
    for r, w in _ENV:
        monkeypatch.delenv(r, raising=False)
        monkeypatch.delenv(w, raising=False)
    assert rank_world() == (0, 1)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert rank_world() == (1, 3)
    _, _, sdir, index = written
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    ds = shards.load(sdir, split, with_meta=True, shuffle=0)
    assert (ds.rank, ds.world) == (1, 3)
    assert sorted(m["name"] for _, _, m in ds) == sorted(_keys_of(sdir, split, 1, 3, 0, shuffle=0))


def test_pax_headers_and_streamed_urls_read_the_same(written, tmp_path):
    """Shards re-packed by other tools (pax headers) take the tarfile path; pipe: URLs stream."""
    _, _, sdir, index = written
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    first = sdir / index["splits"][split]["shards"][0]["file"]
    pax = tmp_path / "pax.tar"
    with tarfile.open(first) as src, tarfile.open(pax, "w", format=tarfile.PAX_FORMAT,
                                                  pax_headers={"comment": "re-packed"}) as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
    from shards.stream import tar_samples
    n = index["splits"][split]["shards"][0]["samples"]

    def read(url):
        out = list(tar_samples([{"url": url}], {url: n}))
        return [(s["__key__"], bytes(s["super.npy"]), bytes(s["meta.json"])) for s in out]

    ref = read(str(first))
    assert len(ref) == n
    assert read(str(pax)) == ref
    assert read(f"pipe:cat {first}") == ref


def test_skip_policy_skips_corruption_only_never_a_programming_error(written, monkeypatch):
    """on_error="skip" is for damaged samples; a bug in decoding (here a KeyError raised by
    the decoder itself) must surface, not be counted as corruption."""
    _, _, sdir, index = written
    from shards import stream

    def broken(sample):
        raise KeyError("a bug, not a damaged sample")

    monkeypatch.setattr(stream, "decode_labels", broken)
    split = next(iter(index["splits"]))
    ds = shards.load(sdir, split, shuffle=0, on_error="skip")
    with pytest.raises(KeyError, match="a bug"):
        next(iter(ds))
    assert ds.skipped.samples == 0
