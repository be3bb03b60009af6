"""shards/reader.py: the reader against the archive, corruption and the error policy, bad arguments, the README snippets."""
from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import shards
from bigearth import nomenclature as nom
from bigearth.record import BANDS_SUPER

from .conftest import ROOT, archive_by_name

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


def test_a_shard_of_another_build_is_refused_at_its_first_sample_or_skipped(written, built, products, tmp_path):
    """Issue 34, part 3: one shard replaced by the same-named shard of another build of the same
    products (another compression: the same patches in the same order, so the same first key and
    size, every CRC valid, the index untouched) is refused before any of its samples is used, or
    skipped whole and counted; verify-shards sees it by its sha256."""
    import dataclasses
    import shutil

    from dataset_builder.build import ARCHIVE_NAME, build

    from .conftest import SHARD_BYTES, read_tar

    _, _, sdir, index = written
    out, _, cfg = built
    build(products, dataclasses.replace(cfg, out_dir=str(tmp_path / "b"), compression="lzf"))
    shards.write_shards(tmp_path / "b" / ARCHIVE_NAME, tmp_path / "theirs", SHARD_BYTES, seed=7, progress=False)
    folder = tmp_path / "ours"
    shutil.copytree(sdir, folder)
    split = max(index["splits"], key=lambda s: len(index["splits"][s]["shards"]))
    entry = index["splits"][split]["shards"][-1]
    theirs, ours = tmp_path / "theirs" / entry["file"], folder / entry["file"]
    # what the other checks cannot see through: the same size, first sample and member names
    assert theirs.stat().st_size == entry["bytes"] and list(read_tar(theirs)) == list(read_tar(ours))
    replaced = set(read_tar(ours))
    shutil.copy(theirs, ours)
    with pytest.raises(shards.ShardError, match=rf"{re.escape(entry['file'])}: sample '{entry['first_key']}' at byte "
                                                r"offset 0 names shard [0-9a-f]{12}…, the index lists [0-9a-f]{12}… "
                                                r"for this file: it is not the shard the index lists"):
        for x in shards.load(folder, split, shuffle=0, with_meta=True):
            assert x[2]["name"] not in replaced  # no sample of the foreign shard comes out before the error
    ds = shards.load(folder, split, shuffle=0, on_error="skip", with_meta=True)
    got = [m["name"] for _, _, m in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)]
    every = {k for e in index["splits"][split]["shards"] for k in read_tar(sdir / e["file"])}
    assert sorted(got) == sorted(every - replaced)
    assert ds.skipped.shards == 1 and ds.skipped.samples == entry["samples"]
    assert any(entry["file"] in p and "sha256 differs" in p for p in shards.verify(folder))


def test_samples_name_their_shard_and_older_indexes_are_read_with_a_note(written, tmp_path, capsys):
    """Each sample's meta.json holds its shard's fingerprint, as the index lists it; an index of
    format 3 (samples that name no shard) is read as before, with a note saying what is not checked."""
    import shutil

    from bigearth.files import field_digests
    from shards.index import INDEX_FIELDS

    from .conftest import read_tar

    _, _, sdir, index = written
    for doc in index["splits"].values():
        for e in doc["shards"]:
            for key, members in read_tar(sdir / e["file"]).items():
                assert json.loads(members["meta.json"])["shard"] == e["fingerprint"], (e["file"], key)
    old = tmp_path / "old"
    shutil.copytree(sdir, old)
    doc = json.loads((old / "index.json").read_text())
    doc["format_version"] = 3
    for d in doc["splits"].values():
        for e in d["shards"]:
            e["fingerprint"] = "0" * 64  # not compared: samples of format 3 name no shard
    doc["digests"] = field_digests(doc, INDEX_FIELDS)
    (old / "index.json").write_text(json.dumps(doc))
    n = sum(1 for _ in shards.load(old, "train", shuffle=0))
    assert n == index["splits"]["train"]["samples"]
    assert "shards of format 3 (before 4) do not name their shard in each sample" in capsys.readouterr().err


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


@pytest.mark.parametrize("variant", ["super", "native"])
def test_loader_batches_are_batch_size_whatever_the_workers(written, variant, monkeypatch, capsys):
    """Two workers, each with an odd share: every batch but the epoch's last holds batch_size
    samples, every sample comes once, and the pixels are the archive's."""
    from shards import reader
    monkeypatch.setattr(reader, "usable_cores", lambda: 2)
    path, _, sdir, index = written
    recs = archive_by_name(path)
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    n = index["splits"][split]["samples"]
    dl = shards.loader(sdir, split, batch_size=4, num_workers=3, shuffle=0, normalize=False, with_meta=True,
                       variant=variant)
    assert "note: num_workers 3 capped at 2 (bound by 2 usable cores)" in capsys.readouterr().err
    sizes, names = [], []
    for x, y, meta in dl:
        cube = x["10m"] if variant == "native" else x
        sizes.append(len(cube))
        assert len(y) == len(meta) == len(cube)
        for i, m in enumerate(meta):
            want = recs[m["name"]].data_10m if variant == "native" else recs[m["name"]].data_super
            np.testing.assert_array_equal(cube[i].numpy(), want)
        names += [m["name"] for m in meta]
    assert sizes == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    assert sorted(names) == sorted(r for r in recs if recs[r].split == split)
    assert len(sizes) == dl.dataset.batches_this_rank(4, 2)
    full = shards.loader(sdir, split, batch_size=4, num_workers=2, shuffle=0, partial_batches=False)
    assert [len(y) for _, y in full] == [4] * (n // 4)


def test_channels_last_and_val_are_what_other_loaders_call_them(written, capsys):
    path, _, sdir, index = written
    assert "validation" in index["splits"]
    chw = [x for x, _ in shards.load(sdir, "validation", shuffle=0, normalize=False)]
    hwc = [x for x, _ in shards.load(sdir, "val", shuffle=0, normalize=False, layout="hwc")]
    assert "split 'val' is called 'validation'" in capsys.readouterr().err
    assert hwc[0].shape == (120, 120, 12)
    for a, b in zip(chw, hwc):
        np.testing.assert_array_equal(a.permute(1, 2, 0).numpy(), b.numpy())
    with pytest.raises(ValueError, match="layout must be"):
        shards.load(sdir, "validation", layout="nhwc")


def test_hf_features_are_what_datasets_infers_with_typed_arrays(written, tmp_path, monkeypatch):
    """The declared features equal what datasets infers for every member but the .npy ones, which
    are Array3D of the record's shapes; read back, they equal the archive."""
    datasets = pytest.importorskip("datasets")
    path, _, sdir, index = written
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    files = sorted(str(p) for p in Path(sdir).glob("bigearth_sr-train-*.tar"))
    inferred = datasets.load_dataset("webdataset", data_files={"train": files}, split="train")
    ours = shards.hf_features()
    assert set(ours) == set(inferred.features)
    for k in ours:
        if k.endswith(".npy"):
            assert isinstance(ours[k], datasets.Array3D)
        else:
            assert ours[k] == inferred.features[k], k
    typed = datasets.load_dataset("webdataset", data_files={"train": files}, split="train",
                                  features=ours).with_format("numpy")
    recs = archive_by_name(path)
    for i in range(len(typed)):
        ex = typed[i]
        r = recs[ex["__key__"]]
        np.testing.assert_array_equal(ex["super.npy"], r.data_super)
        np.testing.assert_array_equal(ex["20m.npy"], r.data_20m)


@pytest.mark.parametrize("kw,message", [
    ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
    ({"batch_size": -2}, r"batch_size must be an integer >= 1, got -2"),
    ({"batch_size": 2.5}, r"batch_size must be an integer >= 1, got 2\.5"),
    ({"shuffle": -1}, r"shuffle must be an integer >= 0, got -1"),
    ({"num_workers": -1}, r"num_workers must be an integer >= 0, got -1"),
    ({"num_workers": 1.5}, r"num_workers must be an integer >= 0, got 1\.5"),
    ({"prefetch_factor": 0}, r"prefetch_factor must be an integer >= 1, got 0"),
    ({"rank": 3, "world": 2}, r"rank must be in \[0, world\) = \[0, 2\), got 3"),
    ({"rank": -1, "world": 2}, r"rank must be an integer >= 0, got -1"),
    ({"rank": 0, "world": 0}, r"world must be an integer >= 1, got 0"),
    ({"resampled": True, "epoch_samples": 0}, r"epoch_samples must be an integer >= 1 \(or None\), got 0"),
])
def test_the_loader_refuses_what_it_cannot_do_in_the_caller(written, kw, message):
    """Issue 33: each bad argument is one ValueError naming it and its range, raised before any
    worker starts (batch_size=0 used to spin forever); run in a child with a time limit, so a
    hang fails the test instead of the suite."""
    import subprocess
    import sys
    sdir = written[2]
    code = (f"import shards\ntry:\n    dl = shards.loader({str(sdir)!r}, 'train', **{kw!r})\n    next(iter(dl))\n"
            f"except ValueError as e:\n    print('ValueError:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and re.search("ValueError: " + message, r.stdout), r.stdout + r.stderr[-2000:]


@pytest.mark.parametrize("world, workers, partial", [(1, 0, True), (1, 2, True), (2, 2, True), (2, 2, False),
                                                     (3, 1, False)])
def test_len_is_what_one_pass_gives(written, world, workers, partial):
    """len(load) is the samples a rank reads in one pass, len(loader) its batches: counted here by
    iterating, on every rank (issue 35, part 3)."""
    import shards
    _, _, sdir, index = written
    for rank in range(world):
        ds = shards.load(sdir, "train", shuffle=0, rank=rank, world=world, normalize=False)
        assert len(ds) == sum(1 for _ in ds) == -(-index["splits"]["train"]["samples"] // world)
        dl = shards.loader(sdir, "train", batch_size=3, num_workers=workers, shuffle=0, rank=rank, world=world,
                           partial_batches=partial, pin_memory=False, normalize=False)
        batches = [len(x) for x, _ in dl]
        assert len(dl) == len(batches) and len(dl.dataset) == len(ds)
        assert all(n == 3 for n in batches[:-1]) and (partial or batches[-1] == 3)
