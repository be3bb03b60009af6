"""``bigearth-sr sr-eval`` (dataset_builder/sr/evaluate.py)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bigearth_cli.cli import main as cli
from bigearth.record import BANDS_20M
from dataset_builder import upsample
from dataset_builder.sr import wald

from .conftest import fixtures_dir
from .test_sr_model import tiny_bundle
from .test_sr_wald import CROP


def _bilinear_rmse_2x(scene) -> float:
    """Wald 2x for bilinear, computed here from the pieces: degrade, interpolate, compare."""
    sc = wald.trim(scene)
    low20 = wald.degrade(sc["im20"], BANDS_20M, 2)
    est = np.stack([_bil(a, 2) for a in low20])
    return float(np.sqrt(((est - sc["im20"]) ** 2).mean()))


def _bil(a, f):
    import torch
    out = torch.empty(a.shape[0] * f, a.shape[1] * f)
    upsample.bilinear(torch.from_numpy(np.ascontiguousarray(a)), f, out)
    return out.numpy().astype(np.float64)


def test_real_crop_table_files_and_figures(tmp_path):
    crop = fixtures_dir(CROP)
    w = tiny_bundle(tmp_path / "w.npz")
    assert cli(["sr-eval", str(crop), "--methods", "bilinear,bicubic,dsen2", "--sr-weights", str(w),
                "--out", str(tmp_path / "ev")]) == 0
    doc = json.loads((tmp_path / "ev" / "sr_eval.json").read_text())
    res = doc["results"]
    assert set(res) == {"2x", "6x"} and set(res["2x"]) == {"bilinear", "bicubic", "dsen2"}
    assert res["2x"]["bilinear"]["overall"]["rmse"] == pytest.approx(_bilinear_rmse_2x(wald.read_scene(crop)), rel=1e-5)
    assert res["2x"]["bicubic"]["overall"]["rmse"] < res["2x"]["bilinear"]["overall"]["rmse"]
    for f in ("sr_eval.md", "sr_eval.csv", "sr_eval_2x.png", "sr_eval_6x.png"):
        assert (tmp_path / "ev" / f).stat().st_size > 100


def test_full_resolution_against_the_synthetic_truth(products, tmp_path):
    assert cli(["sr-eval", str(products[0]), "--methods", "bilinear,bicubic", "--east", "0.5",
                "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "sr_eval.json").read_text())["results"]
    assert set(res) == {"2x", "6x", "full"}
    assert set(res["full"]["bilinear"]["bands"]) == set(upsample.BANDS_SR)
    # a method that knows nothing finer than the coarse bands cannot be perfect
    assert res["full"]["bicubic"]["overall"]["rmse"] > 1


def test_shipped_dsen2_beats_bicubic_on_the_real_crop(tmp_path):
    """The shipped weights' promise, on the held-out east half of the real crop (Wald 2x)."""
    crop = fixtures_dir(CROP)
    assert cli(["sr-eval", str(crop), "--methods", "bicubic,dsen2", "--east", "0.5", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "sr_eval.json").read_text())["results"]
    assert res["2x"]["dsen2"]["overall"]["rmse"] < 0.85 * res["2x"]["bicubic"]["overall"]["rmse"]
    assert res["6x"]["dsen2"]["overall"]["rmse"] < res["6x"]["bicubic"]["overall"]["rmse"]


def test_unknown_method_and_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):  # refused where parsed
        cli(["sr-eval", "x.mat", "--methods", "bilinear,lanczos"])
    assert "must be comma-separated names of" in capsys.readouterr().err
    bad = tmp_path / "x.txt"
    bad.write_text("?")
    assert cli(["sr-eval", str(bad), "--methods", "bilinear"]) == 1
    assert re.search(r"x\.txt: not a scene", capsys.readouterr().err)
