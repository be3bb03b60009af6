"""``bigearth-sr sr-train`` (sr_lab/train.py)."""
from __future__ import annotations

import hashlib
import os
import re

import pytest
import torch

from bigearth_cli.cli import main as cli
from bigearth.files import content_digest, sha256_file
from dataset_builder.sr import consistency
from dataset_builder.sr.model import DSen2Net, NetSpec
from dataset_builder.sr.weights import load_bundle
from sr_lab import scenes, train

TINY = ["--blocks", "1", "--features", "8", "--steps-per-epoch", "4", "--batch2", "8", "--batch6", "4",
        "--crop6", "24", "--no-progress"]


def _run(products, out, *extra):
    return cli(["sr-train", *map(str, products), "--out", str(out), *TINY, *extra])


def test_short_training_beats_bilinear_on_held_out_data(products, tmp_path):
    out = tmp_path / "run"
    assert cli(["sr-train", *map(str, products), "--out", str(out), "--nets", "2", "--blocks", "2", "--features", "16",
                "--epochs2", "8", "--steps-per-epoch", "15", "--batch2", "16", "--lr", "1e-3", "--no-progress"]) == 0
    ck = torch.load(out / "checkpoint_2x.pt", weights_only=True)
    # the baseline on the same held-out scene: the network with no detail term (bilinear, made consistent)
    _, val = train.split_scenes(scenes.load(products), "auto", "")
    assert len(val) == 1
    baseline = train.validate(DSen2Net(NetSpec(2, 1, 4)), train.pairs_for(2, val, "gauss"), "cpu")
    assert ck["history"][-1]["val_l1"] < 0.93 * baseline, (ck["history"], baseline)
    assert not (out / "dsen2.npz").exists()  # one network alone makes no bundle


def test_resume_equals_an_uninterrupted_run(products, tmp_path):
    _run(products[:1], tmp_path / "a", "--nets", "2", "--epochs2", "3")
    _run(products[:1], tmp_path / "b", "--nets", "2", "--epochs2", "2")
    _run(products[:1], tmp_path / "b", "--nets", "2", "--epochs2", "3", "--resume")
    a = torch.load(tmp_path / "a" / "checkpoint_2x.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint_2x.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for k, v in a["net"].items():
        assert torch.equal(v, b["net"][k]), k
    assert [h["val_l1"] for h in a["history"]] == [h["val_l1"] for h in b["history"]]


def test_bundle_records_its_provenance(products, tmp_path):
    _run(products[:1], tmp_path, "--epochs2", "1", "--epochs6", "1", "--seed", "3")
    nets, meta = load_bundle(tmp_path / "dsen2.npz")
    prov = meta["provenance"]
    assert prov["sources"] == {products[0].name: content_digest(products[0])}
    files = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in products[0].rglob("*") if f.is_file())
    assert prov["source_files"] == sorted(set(files))  # every file's bytes, names left out
    assert prov["train_scenes"] == [scenes.read_piece(products[0])[1]] and prov["val_scenes"] == []
    assert prov["seed"] == 3 and prov["options"]["features"] == 8 and set(prov["history"]) == {"2", "6"}
    assert (nets[2].spec.blocks, nets[6].spec.features) == (1, 8)


def test_checkpoints_are_data_never_code(products, tmp_path, capsys):
    _run(products[:1], tmp_path, "--nets", "2", "--epochs2", "1")
    ck = tmp_path / "checkpoint_2x.pt"
    torch.save({"fingerprint": "x", "hook": os.system}, ck)  # a pickled callable
    capsys.readouterr()
    assert _run(products[:1], tmp_path, "--nets", "2", "--epochs2", "2", "--resume") == 1
    assert re.search(r"checkpoint_2x\.pt: refused: .*could run code", capsys.readouterr().err)
    _run(products[:1], tmp_path / "other", "--nets", "2", "--epochs2", "1")
    kept = sha256_file(tmp_path / "other" / "checkpoint_2x.pt")
    capsys.readouterr()
    # other options, same folder
    assert _run(products[:1], tmp_path / "other", "--nets", "2", "--epochs2", "2", "--resume", "--lr", "1e-3") == 1
    assert "checkpoint of another run" in capsys.readouterr().err
    assert sha256_file(tmp_path / "other" / "checkpoint_2x.pt") == kept  # left as it was


def test_bad_options_fail_where_parsed(products, tmp_path, capsys):
    for bad in (["--blocks", "-1"], ["--spectral-jitter", "1.5"], ["--brightness", "0"], ["--batch2", "0"]):
        with pytest.raises(SystemExit):
            _run(products[:1], tmp_path, *bad)
        assert "must be" in capsys.readouterr().err


def test_whole_scenes_are_held_out_or_left_out(products, tmp_path, capsys):
    """Validation takes whole scenes, --exclude-scenes drops them from everything, and the bundle says which."""
    keys = sorted(scenes.read_piece(p)[1] for p in products)
    _run(products, tmp_path, "--epochs2", "1", "--epochs6", "1", "--val-scenes", keys[0], "--exclude-scenes", keys[1])
    prov = load_bundle(tmp_path / "dsen2.npz")[1]["provenance"]
    assert prov["val_scenes"] == [keys[0]] and prov["train_scenes"] == [keys[2]]
    # the left-out scene is not among what the bundle saw, by name or by content: sr-eval judges it
    left_out = next(p for p in products if scenes.read_piece(p)[1] == keys[1])
    assert left_out.name not in prov["sources"] and len(prov["sources"]) == 2
    from bigearth.files import file_digests
    bands = set().union(*(file_digests(f) for f in scenes.pixel_files(left_out)))
    assert len(scenes.pixel_files(left_out)) == 12 and not bands & set(prov["source_files"])
    assert cli(["sr-eval", str(left_out), "--methods", "bicubic,dsen2", "--sr-weights", str(tmp_path / "dsen2.npz"),
                "--no-figures", "--out", str(tmp_path / "ev")]) == 0
    capsys.readouterr()
    assert _run(products, tmp_path / "x", "--exclude-scenes", "S2A_19990101") == 1
    assert "--exclude-scenes: no input is of scene S2A_19990101" in capsys.readouterr().err
    assert _run(products, tmp_path / "y", "--exclude-scenes", ",".join(keys)) == 1
    assert "no scene is left to train on" in capsys.readouterr().err


@pytest.mark.parametrize("ratio", [2, 6])
def test_crops_are_aligned_and_their_coarse_input_is_their_targets(products, ratio):
    """Each crop's coarse input is the protocol's operator applied to its target, exactly, whatever the
    rotation, flip, brightness and per-band jitter: the consistency step then pulls towards the truth."""
    sc = scenes.load(products[:1])
    pairs = train.pairs_for(ratio, sc, "gauss", 24 if ratio == 6 else 32)
    gen = torch.Generator().manual_seed(ratio)
    crop = 24 if ratio == 6 else 32
    x, y, low = train.sample_batch(pairs, torch.ones(1), crop, 6, gen, ratio, brightness=1.6, jitter=0.3)
    assert x.shape[-2:] == y.shape[-2:] == (crop, crop) and low.shape[-1] == crop // ratio
    torch.testing.assert_close(low, consistency.degrade(y, ratio), rtol=0, atol=0)


def test_a_rerun_never_trains_over_a_run_unasked(products, tmp_path, capsys):
    """Issue 35, as for train: sr-train into a folder holding checkpoints refuses without a flag,
    naming one and its epoch; --resume without one refuses; --overwrite sets the old run aside and
    removes it once the new run has a checkpoint."""
    _run(products[:1], tmp_path, "--nets", "2", "--epochs2", "1")
    ckpt = tmp_path / "checkpoint_2x.pt"
    old = sha256_file(ckpt)
    capsys.readouterr()
    assert _run(products[:1], tmp_path, "--nets", "2", "--epochs2", "2") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {ckpt} holds a run (the 2x network at epoch 1): add --resume")
    assert "--overwrite" in err[0] and sha256_file(ckpt) == old
    assert _run(products[:1], tmp_path / "typo", "--nets", "2", "--resume") == 1
    assert "--resume: " in capsys.readouterr().err
    assert _run(products[:1], tmp_path, "--nets", "2", "--epochs2", "2", "--overwrite", "--seed", "4") == 0
    out = capsys.readouterr().out
    assert "--overwrite: the run in" in out and "(the 2x network at epoch 1)" in out
    ck = torch.load(ckpt, weights_only=True)
    assert ck["epoch"] == 2 and sha256_file(ckpt) != old and not (tmp_path / ".replaced").exists()
    assert (tmp_path / "train_log.txt").read_text().count("sr-train:") == 1  # the old run's log went with it
