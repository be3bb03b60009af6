"""dataset_builder/tasks.py: what Algorithm 1 balances: products weighted by the work their
metadata lets us expect, not by their (equal) patch counts."""
import re

import numpy as np
import pytest
import rasterio

from dataset_builder.build import BuildConfig
from dataset_builder.safe import open_product
from dataset_builder.schedule import serpentine
from dataset_builder.synth import SynthConfig, write_product
from dataset_builder.tasks import DECODE_S_PER_GRID_PATCH, KEPT_PATCH_S, plan_tasks

from .conftest import fixtures_dir


def test_the_quality_percentages_are_the_scl_counts(tmp_path):
    """The synthetic product states what its own SCL holds, as Sen2Cor does (classes over valid pixels)."""
    path = write_product(SynthConfig(tile="T33UUP", date="20170613T101031", tile_size_m=4800, seed=2,
                                     cloud_cover=0.3, snow_cover=0.05, nodata_cover=0.1), tmp_path)
    p = open_product(path)
    with rasterio.open(p.band_paths["SCL"]) as ds:
        scl = ds.read(1)
    valid = (scl != 0).sum()
    assert p.quality["NODATA_PIXEL_PERCENTAGE"] == np.float64(100 * (scl == 0).mean()).round(6)
    for key, cls in (("HIGH_PROBA_CLOUDS_PERCENTAGE", 9), ("SNOW_ICE_PERCENTAGE", 11), ("CLOUD_SHADOW_PERCENTAGE", 3)):
        assert abs(p.quality[key] - 100 * (scl == cls).sum() / valid) < 1e-5, key
    cloud = sum(p.quality[k] for k in ("MEDIUM_PROBA_CLOUDS_PERCENTAGE", "HIGH_PROBA_CLOUDS_PERCENTAGE",
                                       "THIN_CIRRUS_PERCENTAGE"))
    assert abs(p.quality["CLOUD_COVERAGE_ASSESSMENT"] - cloud) < 1e-5
    assert 0 < p.expected_kept_share() < 1


def test_real_metadata_states_its_quality():
    """A real product's Image_Content_QI, read as the XML states it (checked by a regex here)."""
    root = fixtures_dir("safe-metadata")
    path = next(root.glob("baseline-02.05/*.SAFE"))
    p = open_product(path)
    xml = (path / "MTD_MSIL2A.xml").read_text()
    for key in ("NODATA_PIXEL_PERCENTAGE", "HIGH_PROBA_CLOUDS_PERCENTAGE", "SNOW_ICE_PERCENTAGE"):
        assert p.quality[key] == float(re.search(rf"<{key}>([^<]+)<", xml).group(1))
    assert p.quality["CLOUD_COVERAGE_ASSESSMENT"] == float(re.search(r"<Cloud_Coverage_Assessment>([^<]+)<", xml).group(1))
    assert p.expected_kept_share() < 0.2  # an 86 % cloudy product: little will be kept


def test_products_of_equal_grids_are_dealt_by_expected_work(tmp_path):
    paths = [write_product(SynthConfig(tile=t, date=d, tile_size_m=4800, seed=i, cloud_cover=c, snow_cover=0.0), tmp_path)
             for i, (t, d, c) in enumerate((("T33UUP", "20170613T101031", 0.0), ("T29UPU", "20170617T113321", 0.6),
                                            ("T35VPK", "20180204T094159", 0.0), ("T34VFJ", "20170823T094031", 0.6)))]
    cfg = BuildConfig(out_dir=str(tmp_path / "o"), clc=[str(p) for p in tmp_path.glob("CLC_*.tif")], upsampling="dsen2")
    tasks, failed, _ = plan_tasks(paths, cfg)
    assert not failed and len({t.count for t in tasks}) == 1  # the same grid: counts cannot tell them apart
    for t in tasks:
        share = t.source.expected_kept_share()
        assert t.work == t.count * (DECODE_S_PER_GRID_PATCH + KEPT_PATCH_S["dsen2"] * share)
    clear = {t.id for t in tasks if t.source.expected_kept_share() > 0.8}
    assert len(clear) == 2
    plan = serpentine(tasks, [t.work for t in tasks], 2)
    assert all(len({t.id in clear for t in w}) == 2 for w in plan)  # each worker: one clear, one cloudy


def test_the_paper_model_and_adaptation_weigh_in_the_expected_work(tmp_path):
    """A task's expected work counts the DSen2 model chosen (the paper model's measured multiple of
    the default's per-patch cost) and adaptation's steps, once per task; bilinear ignores both."""
    from dataset_builder.tasks import ADAPT_S_PER_STEP, DSEN2_MODEL_COST
    path = write_product(SynthConfig(tile_size_m=2400, seed=3, cloud_cover=0.0, snow_cover=0.0), tmp_path)
    clc = [str(p) for p in tmp_path.glob("CLC_*.tif")]

    def work(**kw):
        (t,), _, _ = plan_tasks([path], BuildConfig(out_dir=str(tmp_path / "o"), clc=clc, **kw))
        return t, t.work
    t, default = work(upsampling="dsen2")
    share = t.source.expected_kept_share()
    _, paper = work(upsampling="dsen2", sr_model="paper", sr_adapt=20)
    assert paper - default == pytest.approx(20 * ADAPT_S_PER_STEP["paper"]
                                            + t.count * (DSEN2_MODEL_COST["paper"] - 1) * KEPT_PATCH_S["dsen2"] * share)
    assert DSEN2_MODEL_COST["paper"] > 5 and work(upsampling="bilinear", sr_model="paper", sr_adapt=20)[1] == \
        work(upsampling="bilinear")[1]
