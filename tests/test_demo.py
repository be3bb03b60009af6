"""bigearth_cli/demo.py: the main job's chain on a tiny configuration, its printed tables
recomputed from the predictions it wrote, and a second run that redoes nothing."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from bigearth import nomenclature as nom
from bigearth.files import sha256_file

from .conftest import ROOT
from .test_metrics import independent_prf

TINY = ["--products", "6", "--tile-size-m", "6000", "--epochs", "2", "--milestones", "1", "--batch-size", "8",
        "--no-progress"]


def _demo(out: Path) -> str:
    exe = Path(sys.executable).with_name("bigearth-sr")
    r = subprocess.run([str(exe), "demo", "--out", str(out), *TINY], capture_output=True, text=True, timeout=900,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def _row(text: str, label: str) -> list[float]:
    m = re.search(rf"^  {re.escape(label)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)(?:\s+(\d+))?", text, re.M)
    assert m, f"no row {label!r} in\n{text[-3000:]}"
    return [float(v) for v in m.groups() if v is not None]


def test_the_demo_runs_the_chain_prints_what_its_predictions_give_and_reruns_as_a_no_op(tmp_path):
    out = tmp_path / "demo"
    text = _demo(out)
    for stage in range(1, 6):
        assert f"[{stage}/5]" in text
    assert "engine horovod: 2 rank(s)" in text or "the same run with torch.distributed" in text

    # Table 2 and 3 as printed == an independent computation on the written predictions
    pred = np.load(out / "eval" / "predictions.npz")  # plain arrays: no pickle allowed
    y, p = pred["targets"].astype(np.int64), (pred["probs"] >= float(pred["threshold"])).astype(np.int64)
    assert len(pred["names"]) == len(y) and len(set(pred["names"])) == len(y)
    tp, fp, fn, prec, rec, f1 = independent_prf(y, p)
    micro_p, micro_r = tp.sum() / max(tp.sum() + fp.sum(), 1), tp.sum() / max(tp.sum() + fn.sum(), 1)
    micro = [micro_p, micro_r, 2 * micro_p * micro_r / max(micro_p + micro_r, 1e-12)]
    np.testing.assert_allclose(_row(text, "micro"), micro, atol=6e-4)
    present = np.flatnonzero(y.sum(0) > 0)
    assert f"({len(present)} of 43 classes present in the split)" in text
    for c in present:
        got = _row(text, nom.CLASS_NAMES[c])
        np.testing.assert_allclose(got[:3], [prec[c], rec[c], f1[c]], atol=6e-4, err_msg=nom.CLASS_NAMES[c])
        assert got[3] == y[:, c].sum()

    # the baseline: the classes in > half of the training patches, from the archive itself
    with h5py.File(out / "dataset" / "bigearth_sr.h5", "r") as f:
        split, classes = f["split"].asstr()[:], f["classes"][:].astype(np.int64)
        names = f["name"].asstr()[:]
    assert sorted(names[split == "test"]) == sorted(pred["names"])  # the test split, each patch once
    guess = classes[split == "train"].mean(0) > 0.5
    btp, bfp, bfn, *_ = independent_prf(classes[split == "test"], np.broadcast_to(guess, y.shape).astype(np.int64))
    bp, br = btp.sum() / max(btp.sum() + bfp.sum(), 1), btp.sum() / max(btp.sum() + bfn.sum(), 1)
    np.testing.assert_allclose(_row(text, "label-frequency baseline"), [bp, br, 2 * bp * br / max(bp + br, 1e-12)],
                               atol=6e-4)
    for plot in ("train/curves.png", "eval/f1_43.png"):
        assert str(out / plot) in text and (out / plot).stat().st_size > 0

    # a second run reuses every stage and changes nothing
    before = {p: sha256_file(out / p) for p in ("dataset/bigearth_sr.h5", "train/checkpoint.pt", "eval/report.json")}
    again = _demo(out)
    assert "reused 6 products" in again and "reused the finished run" in again and "reused" in again.split("[5/5]")[1]
    assert {p: sha256_file(out / p) for p in before} == before


def test_without_horovod_the_demo_says_so_and_uses_torch_distributed(monkeypatch, capsys):
    from bigearth_cli import demo
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    engine, cmd = demo.launcher(2, "horovod")
    assert engine == "ddp" and Path(cmd[0]).name == "torchrun" and "--nproc_per_node" in cmd
    assert "torch.distributed" in capsys.readouterr().out
    assert demo.launcher(1, "horovod")[0] == "none"


@pytest.mark.parametrize("key,saved,wanted,same", [("milestones", (13,), "13", True),
                                                   ("layers", "1,1,1,1", "1,1,1,1", True), ("lr", 0.05, 0.05, True),
                                                   ("milestones", (30, 60), "30,60", True),
                                                   ("milestones", (13,), "8", False), ("dropout", 0.2, 0.5, False)])
def test_a_checkpoint_is_reused_only_for_the_same_options(key, saved, wanted, same):
    from bigearth_cli.demo import same_options
    assert same_options({key: saved}, {key: wanted}) is same


def test_a_demo_whose_tiles_miss_a_split_stops_before_any_work(tmp_path, capsys):
    """4 products lie on 4 tiles, none of them a test tile: said at once, nothing synthesized."""
    from bigearth_cli.cli import main
    from bigearth_cli.demo import splits_missing
    from dataset_builder.products import tile_split
    from dataset_builder.tiles import DEFAULT_SCENES
    tiles4 = {t for t, *_ in DEFAULT_SCENES[:4]}
    expect = [s for s in ("train", "validation", "test") if s not in {tile_split(t, (0.6, 0.2, 0.2)) for t in tiles4}]
    assert expect and splits_missing(4, (0.6, 0.2, 0.2), "test") == expect and not splits_missing(5, (0.6, 0.2, 0.2), "test")
    assert main(["demo", "--out", str(tmp_path / "d"), "--products", "4", "--tile-size-m", "3600"]) == 1
    err = capsys.readouterr().err
    assert f"no patch to split(s) {expect}" in err and "--products 5" in err
    assert not (tmp_path / "d" / "products").exists()
