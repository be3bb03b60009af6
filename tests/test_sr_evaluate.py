"""``bigearth-sr sr-eval`` (sr_lab/evaluate.py)."""
from __future__ import annotations

import json
import shutil
import re

import numpy as np
import pytest

from bigearth_cli.cli import main as cli
from bigearth.record import BANDS_20M
from dataset_builder import upsample
from sr_lab import wald

from .conftest import fixtures_dir
from .test_sr_model import tiny_bundle
from .test_sr_wald import CROP


def _bilinear_rmse_2x(scene) -> float:
    """Wald 2x for bilinear, computed here from the pieces: degrade, interpolate, compare."""
    sc = wald.trim(scene, 12)  # the 2x protocol trims to what degrades by 2 at every resolution
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
    pool = doc["pooled"]
    assert set(pool) == {"2x", "6x"} and set(pool["2x"]["methods"]) == {"bilinear", "bicubic", "dsen2"}
    assert pool["2x"]["methods"]["bilinear"]["rmse"] == pytest.approx(_bilinear_rmse_2x(wald.read_scene(crop)), rel=1e-5)
    assert pool["2x"]["methods"]["bicubic"]["rmse"] < pool["2x"]["methods"]["bilinear"]["rmse"]
    # 600 px: 5 x 5 patches of 120 at 2x; the 6x protocol trims to 576 px (multiples of 36): 4 x 4
    assert pool["2x"]["patches"] == 25 and pool["6x"]["patches"] == 16
    for f in ("sr_eval.md", "sr_eval.csv", "sr_eval_2x.png", "sr_eval_6x.png"):
        assert (tmp_path / "ev" / f).stat().st_size > 100


def test_one_row_per_scene_pooled_over_pieces_and_patches_counted(tmp_path):
    """Three inputs, two scenes (two pieces of one acquisition): rows, pooled figures and the
    worse-than-bicubic counts recomputed here from the pieces."""
    pieces = [fixtures_dir(f"sentinel2-patches/{n}.mat") for n in
              ("S2A_MSIL2A_20171101T094131_N9999_R036_T35VNJ_00_00", "S2A_MSIL2A_20171101T094131_N9999_R036_T35VNJ_13_13",
               "S2B_MSIL2A_20170930T095019_0_12")]
    assert cli(["sr-eval", *map(str, pieces), "--methods", "bilinear,bicubic", "--no-figures", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "sr_eval.json").read_text())
    rows = {r["scene"]: r for r in doc["report"]["scenes"]}
    assert set(rows) == {"S2A_20171101", "S2B_20170930"} and rows["S2A_20171101"]["pieces"] == 2
    assert "6x" not in doc["pooled"]  # 120 px patches are too small for the 6x protocol, and the report says so
    assert {k["piece"] for k in doc["report"]["skipped"]} == {p.stem for p in pieces}
    assert "6x not run on 3 piece(s) too small for it (6x needs at least 288 x 288 px" in (tmp_path / "sr_eval.md").read_text()

    def per_patch(p):
        return _bilinear_rmse_2x(wald.read_scene(p))
    # a scene's RMSE pools its pieces' squared errors (equal sizes here: the mean of the squares)
    both = np.sqrt(np.mean([per_patch(p) ** 2 for p in pieces[:2]]))
    from sr_lab.evaluate import _rmse
    assert _rmse(rows["S2A_20171101"], "2x", "bilinear") == pytest.approx(both, rel=1e-5)
    bil = doc["pooled"]["2x"]["methods"]["bilinear"]
    assert bil["rmse"] == pytest.approx(np.sqrt(np.mean([per_patch(p) ** 2 for p in pieces])), rel=1e-5)
    # bilinear is worse than bicubic by > 2 DN on the land patches, not on the calm sea
    assert sorted(bil["patches_worse"]) == sorted(f"{p.stem}@0,0" for p in pieces[:2])
    assert bil["scenes_worse"] == ["S2A_20171101"]
    covers = doc["pooled"]["2x"]["covers"]
    assert covers["water"]["patches"] == 1 and covers["water"]["from"] == ["spectra"]
    assert "| **pooled** |" in (tmp_path / "sr_eval.md").read_text()


def test_reports_merge_exactly(tmp_path):
    """Two runs' JSON merged == one run over both inputs (what a cross-validation pools)."""
    from sr_lab.evaluate import merge_reports
    a, b = (fixtures_dir(f"sentinel2-patches/{n}.mat") for n in ("S2A_MSIL2A_20171121T112351_61_0", "S2B_MSIL2A_20170930T095019_0_12"))
    docs = []
    for name, ins in (("a", [a]), ("b", [b]), ("ab", [a, b])):
        assert cli(["sr-eval", *map(str, ins), "--methods", "bilinear,bicubic", "--no-figures", "--out", str(tmp_path / name)]) == 0
        docs.append(json.loads((tmp_path / name / "sr_eval.json").read_text()))
    merged = merge_reports(docs[:2])
    for m in ("bilinear", "bicubic"):
        assert merged["pooled"]["2x"]["methods"][m]["rmse"] == pytest.approx(docs[2]["pooled"]["2x"]["methods"][m]["rmse"], rel=1e-9)


def test_scenes_the_weights_saw_are_left_out(tmp_path, capsys):
    """A bundle names the scenes it trained and validated on; their figures are not reported."""
    import torch
    from dataset_builder.sr.weights import load_bundle, save_bundle
    nets, _ = load_bundle(tiny_bundle(tmp_path / "t.npz"))
    w = save_bundle(tmp_path / "w.npz", nets, {"provenance": {"train_scenes": ["S2A_20171121"], "val_scenes": []}})
    a, b = (fixtures_dir(f"sentinel2-patches/{n}.mat") for n in ("S2A_MSIL2A_20171121T112351_61_0", "S2B_MSIL2A_20170930T095019_0_12"))
    assert cli(["sr-eval", str(a), str(b), "--methods", "bicubic,dsen2", "--sr-weights", str(w), "--no-figures",
                "--out", str(tmp_path / "ev")]) == 0
    doc = json.loads((tmp_path / "ev" / "sr_eval.json").read_text())
    assert [r["scene"] for r in doc["report"]["scenes"]] == ["S2B_20170930"]
    assert doc["report"]["excluded"][0]["scene"] == "S2A_20171121"
    capsys.readouterr()
    assert cli(["sr-eval", str(a), "--methods", "bicubic,dsen2", "--sr-weights", str(w), "--no-figures"]) == 1
    assert "nothing is left to report" in capsys.readouterr().err
    assert cli(["sr-eval", str(a), "--methods", "bicubic,dsen2", "--sr-weights", str(w), "--no-figures", "--allow-seen"]) == 0
    assert "S2A_20171121 (seen)" in capsys.readouterr().out
    del torch


def test_full_resolution_against_the_synthetic_truth(products, tmp_path):
    assert cli(["sr-eval", str(products[0]), "--methods", "bilinear,bicubic", "--no-figures", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "sr_eval.json").read_text())
    assert doc["report"]["scenes"][0]["kind"] == "synthetic"
    full = doc["pooled"]["full"]["methods"]
    assert set(full["bilinear"]["bands"]) == set(upsample.BANDS_SR)
    # a method that knows nothing finer than the coarse bands cannot be perfect
    assert full["bicubic"]["rmse"] > 1


def test_adaptation_learns_from_the_degraded_input_alone(products, tmp_path, monkeypatch):
    """sr-eval --sr-adapt: each piece's DSen2 is adapted on that piece's protocol input (one grid
    level down), never on its reference; the report's figures are those of the adapted networks."""
    from dataset_builder.sr import adapt

    seen = []
    real = adapt.adapt

    def spy(nets, pieces, *a, **k):
        seen.append([tuple(c.shape for c in p) for p in pieces])
        return real(nets, pieces, *a, **k)
    monkeypatch.setattr(adapt, "adapt", spy)
    assert cli(["sr-eval", str(products[0]), "--methods", "bicubic,dsen2", "--no-figures", "--allow-seen",
                "--sr-adapt", "2", "--out", str(tmp_path / "a")]) == 0
    side = 480  # the 4.8 km product at 10 m
    # 2x: the input is the product degraded by 2; 6x: by 6 (each trimmed to its protocol's multiple)
    assert seen[0] == [((4, 240, 240), (6, 120, 120), (2, 40, 40))]
    assert seen[1] == [((4, 78, 78), (6, 39, 39), (2, 13, 13))] and side // 6 == 80
    monkeypatch.setattr(adapt, "adapt", real)
    assert cli(["sr-eval", str(products[0]), "--methods", "bicubic,dsen2", "--no-figures", "--allow-seen",
                "--out", str(tmp_path / "b")]) == 0
    rmse = [json.loads((tmp_path / d / "sr_eval.json").read_text())["pooled"]["2x"]["methods"]["dsen2"]["rmse"]
            for d in "ab"]
    assert rmse[0] != rmse[1]


def test_an_input_too_small_for_the_protocol_is_refused(tmp_path, capsys):
    """A 36 px crop leaves 9 px of degraded 20 m input: named, with the minimum, not measured."""
    import h5py
    small = tmp_path / "S2A_MSIL2A_20200101T000000_1_1.h5"
    rng = np.random.default_rng(0)
    with h5py.File(small, "w") as f:
        for key, n, side in (("im10", 4, 36), ("im20", 6, 18), ("im60", 2, 6)):
            f[key] = rng.uniform(100, 3000, (n, side, side)).astype(np.float32)
    assert cli(["sr-eval", str(small), "--methods", "bilinear,bicubic", "--no-figures"]) == 1
    assert re.search(r"_1_1\.h5: too small for Wald's protocol: 2x needs at least 48 x 48 px at 10 m", capsys.readouterr().err)


def _crop(path, side, fill=None, nan=False, seed=0):
    """A MAT-like .h5 crop of ``side`` px at 10 m: random, or ``fill`` everywhere, one NaN if asked."""
    import h5py
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for key, n, d in (("im10", 4, 1), ("im20", 6, 2), ("im60", 2, 6)):
            a = rng.uniform(100, 3000, (n, side // d, side // d)).astype(np.float32) if fill is None else \
                np.full((n, side // d, side // d), fill, np.float32)
            if nan and key == "im20":
                a[0, 0, 0] = np.nan
            f[key] = a
    return path


def test_an_input_that_fails_fails_alone(tmp_path, capsys):
    """Among four inputs, one too small, one constant and one holding a NaN fail, each named in the
    report; the fourth is measured exactly as when it is the only input; the run exits 1 naming
    the first failure and the count."""
    good = _crop(tmp_path / "S2A_MSIL2A_20200101T000000_2_2.h5", 120, seed=1)
    bad = [_crop(tmp_path / "S2A_MSIL2A_20200102T000000_1_1.h5", 36),
           _crop(tmp_path / "S2A_MSIL2A_20200103T000000_1_1.h5", 120, fill=500.0),
           _crop(tmp_path / "S2A_MSIL2A_20200104T000000_1_1.h5", 120, nan=True)]
    run = ["--methods", "bilinear,bicubic", "--no-figures", "--out"]
    assert cli(["sr-eval", str(good), *run, str(tmp_path / "alone")]) == 0
    capsys.readouterr()
    assert cli(["sr-eval", *map(str, bad), str(good), *run, str(tmp_path / "all")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(r"_1_1\.h5: .*\(3 input\(s\) failed and are not measured, listed in the report", err[0])
    doc, alone = (json.loads((tmp_path / d / "sr_eval.json").read_text()) for d in ("all", "alone"))
    assert sorted(f["piece"] for f in doc["report"]["failed"]) == sorted(map(str, bad))
    whys = " ".join(f["why"] for f in doc["report"]["failed"])
    assert "too small for Wald's protocol" in whys and "one value" in whys and "NaN" in whys
    assert [r["scene"] for r in doc["report"]["scenes"]] == ["S2A_20200101"]
    assert doc["pooled"] == alone["pooled"]
    md = (tmp_path / "all" / "sr_eval.md").read_text()
    assert all(f"- failed, not measured: {p}" in md for p in bad)


def test_scenes_of_each_kind_are_pooled_apart_too(tmp_path):
    """A top-of-atmosphere (L1C) and a surface (L2A) crop: besides the pooled row, one per kind,
    each equal to the pooled row of a run on that kind alone."""
    l1c = _crop(tmp_path / "S2A_MSIL1C_20200101T000000_1_1.h5", 120, seed=2)
    l2a = _crop(tmp_path / "S2A_MSIL2A_20200105T000000_1_1.h5", 120, seed=3)
    run = ["--methods", "bilinear,bicubic", "--no-figures", "--out"]
    for name, ins in (("both", [l1c, l2a]), ("l1c", [l1c]), ("l2a", [l2a])):
        assert cli(["sr-eval", *map(str, ins), *run, str(tmp_path / name)]) == 0
    md = (tmp_path / "both" / "sr_eval.md").read_text()
    for kind in ("L1C", "L2A"):
        alone = json.loads((tmp_path / kind.lower() / "sr_eval.json").read_text())["pooled"]["2x"]["methods"]
        row = next(line for line in md.splitlines() if line.startswith(f"| *pooled, {kind}* |"))
        cells = [c.strip(" *") for c in row.split("|")[1:-1]]
        assert cells[2] == "1" and cells[3:6] == [f"{alone[m]['rmse']:.1f}" for m in ("bilinear", "bicubic")] + \
            [f"{alone['bilinear']['ratio_to_bicubic']:.3f}"]
    single = (tmp_path / "l1c" / "sr_eval.md").read_text()
    assert "*pooled, " not in single  # one kind: the pooled row says it all


def test_unknown_method_and_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):  # refused where parsed
        cli(["sr-eval", "x.mat", "--methods", "bilinear,lanczos"])
    assert "must be comma-separated names of" in capsys.readouterr().err
    bad = tmp_path / "x.txt"
    bad.write_text("?")
    assert cli(["sr-eval", str(bad), "--methods", "bilinear"]) == 1
    assert re.search(r"x\.txt: not a super-resolution input", capsys.readouterr().err)


def test_a_training_input_under_another_name_is_known_by_its_bytes(products, tmp_path, capsys):
    """Issue 27: the seen-scene refusal goes by content. A byte-identical crop under another
    scene's name, and a product renamed (another acquisition in its name) with a file added, whose
    band files are the training product's, are both left out; an unrelated crop is not."""
    import h5py

    from bigearth.files import content_digest, file_digests
    from dataset_builder.sr.weights import load_bundle, save_bundle
    rng = np.random.default_rng(0)
    crop = tmp_path / "S2A_MSIL2A_20171121T112351_1_1.h5"
    other = tmp_path / "S2B_MSIL2A_20180101T100000_2_2.h5"
    for path in (crop, other):
        with h5py.File(path, "w") as f:
            for key, n, side in (("im10", 4, 96), ("im20", 6, 48), ("im60", 2, 16)):
                f[key] = rng.uniform(100, 3000, (n, side, side)).astype(np.float32)
    trained = [crop, products[0]]
    nets, _ = load_bundle(tiny_bundle(tmp_path / "t.npz"))
    w = save_bundle(tmp_path / "w.npz", nets, {"provenance": {
        "train_scenes": ["S2A_20171121", "synthetic:x"], "val_scenes": [],
        "sources": {p.name: content_digest(p) for p in trained},
        "source_files": sorted(set().union(*(file_digests(p) for p in trained)))}})
    copy = tmp_path / "S2B_MSIL2A_20190707T101010_5_5.h5"
    copy.write_bytes(crop.read_bytes())
    p = products[0]
    renamed = tmp_path / p.name.replace(p.name.split("_")[2], "20990101T000000")
    shutil.copytree(p, renamed)
    (renamed / "notes.txt").write_text("a file the training product did not have")  # the folder's digest differs
    assert cli(["sr-eval", str(copy), str(renamed), str(other), "--methods", "bicubic,dsen2", "--sr-weights", str(w),
                "--no-figures", "--out", str(tmp_path / "ev")]) == 0
    doc = json.loads((tmp_path / "ev" / "sr_eval.json").read_text())
    assert [r["scene"] for r in doc["report"]["scenes"]] == ["S2B_20180101"]
    why = {e["scene"]: e["why"] for e in doc["report"]["excluded"]}
    assert len(why) == 2 and "has the bytes of an input the DSen2 weights were trained on" in why["S2B_20190707"]
    assert any("file(s) with the bytes of the DSen2 weights' training inputs" in v for v in why.values())


def test_scenes_sharing_only_metadata_bytes_are_unseen(products, tmp_path):
    """Issue 35: two synthetic products of other seeds can share metadata and auxiliary rasters
    byte for byte; the seen rule compares band files only, so a product whose manifest and SCL
    equal a training product's, but whose bands do not, is judged."""
    from bigearth.files import content_digest, file_digests
    from dataset_builder.sr.weights import load_bundle, save_bundle
    from sr_lab import scenes

    trained, judged = products[0], tmp_path / products[1].name
    shutil.copytree(products[1], judged)
    shutil.copy(trained / "manifest.safe", judged / "manifest.safe")  # the training product's bytes, where
    shutil.copy(next(trained.rglob("*_SCL_20m.jp2")), next(judged.rglob("*_SCL_20m.jp2")))  # they hold no band
    nets, _ = load_bundle(tiny_bundle(tmp_path / "t.npz"))
    w = save_bundle(tmp_path / "w.npz", nets, {"provenance": {
        "train_scenes": ["synthetic:x"], "val_scenes": [], "sources": {trained.name: content_digest(trained)},
        "source_files": sorted(file_digests(trained))}})
    assert file_digests(judged) & file_digests(trained)  # they do share files
    assert not set().union(*(file_digests(f) for f in scenes.pixel_files(judged))) & file_digests(trained)
    assert cli(["sr-eval", str(judged), "--methods", "bicubic,dsen2", "--sr-weights", str(w), "--no-figures",
                "--out", str(tmp_path / "ev")]) == 0
    doc = json.loads((tmp_path / "ev" / "sr_eval.json").read_text())
    assert len(doc["report"]["scenes"]) == 1 and not doc["report"]["excluded"]


def test_the_paper_model_is_judged_on_scenes_it_never_saw(products, tmp_path, capsys):
    """sr-eval --sr-model paper reads the shipped 6 x 128 bundle, whose provenance names its
    training and validation scenes: a synthetic product it never saw is reported, a scene it
    trained on is left out as seen; beside --sr-weights the flag is refused in one line."""
    from dataset_builder.sr.weights import MODELS, load
    _, prov = load(None, "paper")
    seen = set(prov["provenance"]["train_scenes"]) | set(prov["provenance"]["val_scenes"])
    assert prov["model"] == "paper" and seen and not any(k.endswith("_s3") for k in seen)
    assert cli(["sr-eval", str(products[0]), "--sr-model", "paper", "--methods", "bicubic,dsen2", "--no-figures",
                "--out", str(tmp_path / "e")]) == 0
    doc = json.loads((tmp_path / "e" / "sr_eval.json").read_text())
    assert [s["scene"] for s in doc["report"]["scenes"]] and not doc["report"]["excluded"]
    capsys.readouterr()
    assert cli(["sr-eval", str(products[0]), "--sr-model", "paper", "--sr-weights", str(MODELS["paper"])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sr-model paper and --sr-weights" in err[0]
