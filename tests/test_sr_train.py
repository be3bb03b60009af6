"""``bigearth-sr sr-train`` (dataset_builder/sr/train.py)."""
from __future__ import annotations

import os
import re

import pytest
import torch

from bigearth_cli.cli import main as cli
from bigearth.files import content_digest, sha256_file
from dataset_builder.sr import train, wald
from dataset_builder.sr.model import DSen2Net, NetSpec
from dataset_builder.sr.weights import load_bundle

TINY = ["--blocks", "1", "--features", "8", "--steps-per-epoch", "4", "--batch2", "8", "--batch6", "4",
        "--crop6", "24", "--no-progress"]


def _run(products, out, *extra):
    return cli(["sr-train", *map(str, products), "--out", str(out), *TINY, *extra])


def test_short_training_beats_bilinear_on_held_out_data(products, tmp_path):
    out = tmp_path / "run"
    assert cli(["sr-train", *map(str, products), "--out", str(out), "--nets", "2", "--blocks", "2", "--features", "16",
                "--epochs2", "8", "--steps-per-epoch", "15", "--batch2", "16", "--lr", "1e-3", "--no-progress"]) == 0
    ck = torch.load(out / "checkpoint_2x.pt", weights_only=True)
    # the bilinear baseline on the same held-out east halves: the network with no detail term
    east = [wald.split_east(wald.read_scene(p), 0.5)[1] for p in products]
    baseline = train.validate(DSen2Net(NetSpec(2, 1, 4)), train.pairs_for(2, east, "gauss"), "cpu")
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
    for bad in (["--blocks", "-1"], ["--val-east", "1.5"], ["--batch2", "0"]):
        with pytest.raises(SystemExit):
            _run(products[:1], tmp_path, *bad)
        assert "must be" in capsys.readouterr().err
