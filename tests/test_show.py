"""bigearth_cli/show.py: the pictures hold what they say (the patches' bands, bilinear as torch
computes it, each acquisition's grid of statuses, the counts), from an archive and from shards;
bad arguments are one line."""
from __future__ import annotations

import subprocess
import sys

import geopandas as gpd
import numpy as np
import pytest
import torch
from PIL import Image

from bigearth import nomenclature as nom
from bigearth.pictures import rgb_image, stretch_limits
from bigearth.record import BANDS_20M, BANDS_SUPER
from bigearth_cli import show
from dataset_builder.build import ARCHIVE_NAME
from dataset_builder.catalogue import CATALOGUE_NAME

CLI = [sys.executable, "-m", "bigearth_cli.cli"]


def test_patch_rows_show_the_bands_native_bilinear_and_as_built(built):
    recs = show.archive_records(built[0] / ARCHIVE_NAME, [], 3, 0, None)
    fig = show.patches_figure(recs, "bilinear")
    axes = np.asarray(fig.axes).reshape(len(recs), 5)
    assert axes[0, 3].get_title() == "data_super (bilinear)"
    rows20 = [BANDS_20M.index(b) for b in show.FALSE_COLOUR]
    for rec, ax in zip(recs, axes):
        native = rec.data_20m[rows20].astype(np.float32)
        limits = stretch_limits(native)
        # bilinear on pixel centres with clamped edges, as torch's align_corners=False computes it
        bil = torch.nn.functional.interpolate(torch.from_numpy(native)[None], scale_factor=2, mode="bilinear",
                                              align_corners=False)[0].numpy()
        np.testing.assert_allclose(ax[2].images[0].get_array(), rgb_image(bil, limits), atol=1e-4)
        np.testing.assert_array_equal(ax[1].images[0].get_array(), rgb_image(native, limits))
        sup = rec.data_super[[BANDS_SUPER.index(b) for b in show.FALSE_COLOUR]]
        np.testing.assert_array_equal(ax[3].images[0].get_array(), rgb_image(sup, limits))
        np.testing.assert_array_equal(ax[0].images[0].get_array(), rgb_image(rec.data_super[[3, 2, 1]]))
        assert ax[0].get_ylabel() == rec.name
        text = ax[4].texts[0].get_text()
        assert rec.split in text and all(n in text for n in nom.names_of(rec.classes))


def test_catalogue_picture_draws_every_grid_patch_by_status(built):
    out, manifest, _ = built
    cat = gpd.read_parquet(out / CATALOGUE_NAME)
    fig = show.catalogue_figure(out / CATALOGUE_NAME)
    overview, bars, *grids = fig.axes
    got = {t.get_text(): w.get_width() for t, w in zip(bars.get_yticklabels(), bars.patches)}
    assert got == {"kept": manifest["patches"], **{k: v for k, v in manifest["dropped"].items() if v}}
    statuses = sorted(cat.status.unique(), key=lambda s: (s != "kept", s))
    for ax, (product, rows) in zip(grids, sorted(cat.groupby("product"), key=lambda g: g[0])):
        img = ax.images[0].get_array()
        for r in rows.itertuples():
            assert statuses[int(img[r.y, r.x])] == r.status
        assert ax.get_title().startswith(f"{rows.tile.iloc[0]} ") and f"{(rows.status == 'kept').sum()} of {len(rows)}" in ax.get_title()


def test_cli_on_a_build_and_on_shards(built, written, tmp_path):
    r = subprocess.run(CLI + ["show", str(built[0]), "--out", str(tmp_path / "a.png"), "--count", "2", "--seed", "3"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(tmp_path / "a.png").size[1] > 400 and Image.open(tmp_path / "a-catalogue.png").size[0] > 1000
    sdir = written[2]
    name = next(iter(show.shard_records(sdir, [], 1, 0, "train"))).name
    r = subprocess.run(CLI + ["show", str(sdir), "--out", str(tmp_path / "b.png"), "--names", name],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and name in r.stdout and not (tmp_path / "b-catalogue.png").exists()
    shard_rec = show.shard_records(sdir, [name], 1, 0, None)[0]
    arch_rec = show.archive_records(built[0] / ARCHIVE_NAME, [name], 1, 0, None)[0]
    np.testing.assert_array_equal(shard_rec.data_super, arch_rec.data_super)
    r = subprocess.run(CLI + ["info", str(built[0] / ARCHIVE_NAME), "--plot", str(tmp_path / "c.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (tmp_path / "c.png").stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["--names", "S2A_nothing"], "holds no patch S2A_nothing"),
    (["--out", "x.jpg"], "is not a .png file name"),
    (["--count", "40"], "one picture shows 1 to 16 patches"),
])
def test_bad_arguments_are_one_line(built, tmp_path, argv, message):
    r = subprocess.run(CLI + ["show", str(built[0]), *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_info_plot_needs_a_catalogue(built, tmp_path):
    import shutil
    shutil.copyfile(built[0] / ARCHIVE_NAME, tmp_path / ARCHIVE_NAME)
    r = subprocess.run(CLI + ["info", str(tmp_path / ARCHIVE_NAME), "--plot", str(tmp_path / "p.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"has no {CATALOGUE_NAME} beside it" in r.stderr
