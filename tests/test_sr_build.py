"""The builder with ``--upsampling dsen2`` (dataset_builder/build.py + sr/infer.py)."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from bigearth.files import sha256_file
from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, BANDS_SUPER
from dataset_builder import upsample
from dataset_builder.build import BuildConfig, build
from dataset_builder.safe import open_product, read_band, to_reflectance_dn
from dataset_builder.sr.infer import DSen2

from .test_sr_model import tiny_bundle


def test_dsen2_build_equals_a_whole_tile_run_and_records_the_weights(synth_dir, products, tmp_path):
    weights = tiny_bundle(tmp_path / "w.npz", blocks=2, features=8)
    out = tmp_path / "out"
    # fp32: the precision whose strips are promised bit-identical to a whole-tile run
    cfg = BuildConfig(out_dir=str(out), upsampling="dsen2", sr_weights=str(weights), sr_precision="fp32",
                      clc=sorted(str(p) for p in synth_dir.glob("CLC_*.tif")), progress=False)
    manifest = build(products[:1], cfg)
    assert manifest["patches"] > 0 and not manifest["tiles_failed"]
    sr = manifest["config"]["super_resolution"]
    assert sr["method"] == "dsen2" and sr["files"] == {"w.npz": sha256_file(weights)} and sr["precision"] == "fp32"

    # independent: the network over the whole tile at once, rounded, cut into patches afterwards
    prod = open_product(products[0])
    cube = {k: np.stack([to_reflectance_dn(prod, b, read_band(prod, b)) for b in bands])
            for k, bands in (("b10", BANDS_10M), ("b20", BANDS_20M), ("b60", BANDS_60M))}
    whole = upsample.to_uint16(DSen2(str(weights), precision="fp32")(cube["b10"], cube["b20"], cube["b60"]))
    with h5py.File(out / "bigearth_sr.h5", "r") as f:
        assert json.loads(f.attrs["build_config"])["super_resolution"]["files"] == sr["files"]
        xs, ys, data = f["x"][:], f["y"][:], f["data_super"][:]
    for x, y, d in zip(xs, ys, data):
        for b in upsample.BANDS_SR:
            np.testing.assert_array_equal(d[BANDS_SUPER.index(b)], whole[upsample.BANDS_SR.index(b), y * 120:(y + 1) * 120,
                                                                           x * 120:(x + 1) * 120], err_msg=f"{x} {y} {b}")


def test_values_the_guard_holds_are_those_of_a_whole_tile_run_and_counted(synth_dir, products, tmp_path, monkeypatch):
    """A 6x network that spikes B01 by 30,000 DN at about one pixel in 500, chosen by the 10 m blue
    band's value (content, not window, decides where): the guard's range bound holds them, the build
    stays bit for bit the whole-tile run under the same networks, and the manifest counts the
    values held in the regions computed for its kept patches: some, and no more than the whole
    tile holds."""
    from dataset_builder.sr import infer
    weights = tiny_bundle(tmp_path / "w.npz", blocks=2, features=8)
    prod = open_product(products[0])
    cube = {k: np.stack([to_reflectance_dn(prod, b, read_band(prod, b)) for b in bands])
            for k, bands in (("b10", BANDS_10M), ("b20", BANDS_20M), ("b60", BANDS_60M))}
    real = infer.run_tiled

    def spiky(net, x, **kw):
        out = real(net, x, **kw)
        if net.spec.ratio == 6:
            out[0] += 30000.0 * (x[0].round() % 499 == 0)
        return out
    monkeypatch.setattr(infer, "run_tiled", spiky)
    whole_up = DSen2(str(weights), precision="fp32")
    whole = upsample.to_uint16(whole_up(cube["b10"], cube["b20"], cube["b60"]))
    assert whole_up.held_px > 0
    out = tmp_path / "out"
    manifest = build(products[:1], BuildConfig(out_dir=str(out), upsampling="dsen2", sr_weights=str(weights),
                                               sr_precision="fp32", progress=False,
                                               clc=sorted(str(p) for p in synth_dir.glob("CLC_*.tif"))))
    assert manifest["patches"] > 0 and not manifest["tiles_failed"]
    (tile,) = manifest["tiles"].values()
    assert 0 < tile["sr_held_px"] <= whole_up.held_px
    with h5py.File(out / "bigearth_sr.h5", "r") as f:
        xs, ys, data = f["x"][:], f["y"][:], f["data_super"][:]
    for x, y, d in zip(xs, ys, data):
        for b in upsample.BANDS_SR:
            np.testing.assert_array_equal(d[BANDS_SUPER.index(b)], whole[upsample.BANDS_SR.index(b), y * 120:(y + 1) * 120,
                                                                           x * 120:(x + 1) * 120], err_msg=f"{x} {y} {b}")


def test_other_weights_under_the_same_name_rebuild_the_parts(synth_dir, products, tmp_path):
    weights = tmp_path / "w.npz"
    tiny_bundle(weights, seed=1)
    clc = sorted(str(p) for p in synth_dir.glob("CLC_*.tif"))
    out = tmp_path / "out"

    def run():
        cfg = BuildConfig(out_dir=str(out), upsampling="dsen2", sr_weights=str(weights), clc=clc, progress=False)
        m = build(products[:1], cfg)
        with h5py.File(out / "bigearth_sr.h5", "r") as f:
            return m, f["data_super"][:]

    m1, a = run()
    tiny_bundle(weights, seed=2)  # new content, same file name
    m2, b = run()
    assert m1["config"]["super_resolution"]["files"] != m2["config"]["super_resolution"]["files"]
    assert not np.array_equal(a, b)
    part = next((out / "parts").glob("*.h5"))
    stamp = part.stat().st_mtime_ns
    m3, c = run()  # unchanged weights: the part is reused, not rebuilt
    np.testing.assert_array_equal(b, c)
    assert part.stat().st_mtime_ns == stamp


def test_bigearthnet_v1_patches_get_mirrored_context(tmp_path):
    """Archive patches have no tile around them: the network sees their mirrored edges."""
    import rasterio

    from dataset_builder import archive

    from .conftest import fixtures_dir
    src = fixtures_dir("bigearthnet-v1")
    weights = tiny_bundle(tmp_path / "w.npz")
    out = tmp_path / "out"
    manifest = build([src], BuildConfig(out_dir=str(out), upsampling="dsen2", sr_weights=str(weights), progress=False))
    assert manifest["patches"] == 4 and manifest["config"]["super_resolution"]["method"] == "dsen2"
    up = DSen2(str(weights))
    h = up.halo
    for r in archive.iter_records(out / "bigearth_sr.h5"):
        cubes = {}
        for key, bands in (("b10", BANDS_10M), ("b20", BANDS_20M), ("b60", BANDS_60M)):
            arrs = []
            for b in bands:
                with rasterio.open(src / r.name / f"{r.name}_{b}.tif") as ds:
                    arrs.append(ds.read(1).astype(np.float32))
            cubes[key] = np.stack(arrs)
        pad = {k: np.pad(a, ((0, 0), (p, p), (p, p)), mode="symmetric") for (k, a), p in zip(cubes.items(), (6 * h, 3 * h, h))}
        exp = upsample.to_uint16(up(pad["b10"], pad["b20"], pad["b60"])[:, 6 * h:-6 * h, 6 * h:-6 * h])
        np.testing.assert_array_equal(r.data_super[[BANDS_SUPER.index(b) for b in upsample.BANDS_SR]], exp)
        np.testing.assert_array_equal(r.data_super[[BANDS_SUPER.index(b) for b in BANDS_10M]], r.data_10m)
    # for bilinear, mirroring the edge pixel is the same as clamping: nothing changes
    b20 = cubes["b20"]
    np.testing.assert_array_equal(upsample.upsample_with_context(upsample.get("bilinear"), None, b20, cubes["b60"]),
                                  upsample.get("bilinear")(None, b20, cubes["b60"]))


def write_patch_folders(product, out, xs, ys) -> dict:
    """BigEarthNet v1 patch folders (12 GeoTIFFs + label JSON, the archive's layout) cut from a
    product; returns the 2D mosaic of every band over the cut patches (uint16)."""
    import json as _json

    import rasterio
    from rasterio.transform import Affine
    prod = open_product(product)
    geo = prod.geocoding
    mosaic = {}
    for b in BANDS_10M + BANDS_20M + BANDS_60M:
        f = {**{k: 1 for k in BANDS_10M}, **{k: 2 for k in BANDS_20M}, **{k: 6 for k in BANDS_60M}}[b]
        p = 120 // f
        a = np.clip(np.rint(to_reflectance_dn(prod, b, read_band(prod, b))), 0, 65535).astype(np.uint16)
        mosaic[b] = a[ys[0] * p:(ys[-1] + 1) * p, xs[0] * p:(xs[-1] + 1) * p]
        for y in ys:
            for x in xs:
                name = f"{prod.prefix}_{x}_{y}"
                (out / name).mkdir(parents=True, exist_ok=True)
                with rasterio.open(out / name / f"{name}_{b}.tif", "w", driver="GTiff", width=p, height=p, count=1,
                                   dtype="uint16", crs=geo.crs,
                                   transform=Affine(10 * f, 0, geo.ulx + x * 1200, 0, -10 * f, geo.uly - y * 1200)) as ds:
                    ds.write(a[y * p:(y + 1) * p, x * p:(x + 1) * p], 1)
    for y in ys:
        for x in xs:
            name = f"{prod.prefix}_{x}_{y}"
            ulx, uly = geo.ulx + x * 1200, geo.uly - y * 1200
            (out / name / f"{name}_labels_metadata.json").write_text(_json.dumps({
                "labels": ["Non-irrigated arable land"], "projection": "", "tile_source": prod.name,
                "acquisition_date": "2017-06-13 10:10:31",
                "coordinates": {"ulx": ulx, "uly": uly, "lrx": ulx + 1200, "lry": uly - 1200}}))
    return mosaic


def test_bigearthnet_v1_neighbours_are_the_context(products, tmp_path):
    """Adjacent patches of one tile_source give each other context: bilinear equals a run over the
    whole mosaic exactly, and DSen2 does wherever the mosaic's own border is out of reach."""
    src = tmp_path / "ben"
    mosaic = write_patch_folders(products[0], src, [1, 2], [1, 2])
    weights = tiny_bundle(tmp_path / "w.npz", blocks=2)
    for method, opts in (("bilinear", {}), ("dsen2", {"sr_weights": str(weights)})):
        out = tmp_path / method
        m = build([src], BuildConfig(out_dir=str(out), upsampling=method, progress=False, **opts))
        assert m["patches"] == 4
        up = BuildConfig(out_dir=str(out), upsampling=method, **opts).upsampler()
        stack = [np.stack([mosaic[b].astype(np.float32) for b in bands]) for bands in (BANDS_10M, BANDS_20M, BANDS_60M)]
        whole = upsample.to_uint16(up(*stack))
        keep = slice(0, 240) if method == "bilinear" else slice(6 * up.halo, 240 - 6 * up.halo)
        got = np.zeros_like(whole)
        with h5py.File(out / "bigearth_sr.h5", "r") as f:
            for x, y, d in zip(f["x"][:], f["y"][:], f["data_super"][:]):
                got[:, (y - 1) * 120:y * 120, (x - 1) * 120:x * 120] = d[[BANDS_SUPER.index(b) for b in upsample.BANDS_SR]]
        np.testing.assert_array_equal(got[:, keep, keep], whole[:, keep, keep], err_msg=method)


def test_the_default_build_is_guarded_dsen2_with_the_shipped_weights(synth_dir, products, tmp_path):
    """`bigearth-sr build` without --upsampling writes DSen2 (the paper's method), guarded, shipped weights."""
    from bigearth_cli.cli import main as cli
    from dataset_builder.sr.weights import DEFAULT
    clc = sorted(str(p) for p in synth_dir.glob("CLC_*.tif"))
    assert cli(["build", str(products[0]), *[a for c in clc for a in ("--clc", c)], "--out", str(tmp_path), "--no-progress"]) == 0
    sr = json.loads((tmp_path / "manifest.json").read_text())["config"]["super_resolution"]
    assert sr["method"] == "dsen2" and sr["files"] == {DEFAULT.name: sha256_file(DEFAULT)}
    assert sr["guard"]["consistency"] == "wald-gauss" and sr["provenance"]["train_scenes"]


def test_a_patch_with_context_is_computed_alone_and_equals_the_whole_window(tmp_path):
    """upsample_with_context runs the networks over the patch and their reach only (the margin
    is context): the result equals the networks over the whole window, cut afterwards."""
    up = DSen2(str(tiny_bundle(tmp_path / "w.npz", blocks=2, features=8)), precision="fp32")
    rng = np.random.default_rng(3)
    h, p = up.halo, 120
    cube = lambda c, n: rng.uniform(200, 4000, (c, n, n)).astype(np.float32)  # noqa: E731
    centre = (cube(4, p), cube(6, p // 2), cube(2, p // 6))
    right = (cube(4, p), cube(6, p // 2), cube(2, p // 6))
    got = upsample.upsample_with_context(up, *centre, {(0, 1): right})
    # independent: the window assembled by hand (the right neighbour, the rest mirrored), run whole
    window = []
    for k, m in enumerate((6 * h, 3 * h, h)):
        row = np.concatenate([np.flip(centre[k][:, :, :m], 2), centre[k], right[k][:, :, :m]], axis=2)
        window.append(np.concatenate([np.flip(row[:, :m], 1), row, np.flip(row[:, -m:], 1)], axis=1))
    want = up(*window)[:, 6 * h:-6 * h, 6 * h:-6 * h]
    np.testing.assert_array_equal(got, want)


def test_the_paper_model_is_one_flag(synth_dir, products, tmp_path, capsys):
    """`build --sr-model paper` super-resolves with the shipped 6 x 128 weights, recorded as such in
    the manifest; beside --sr-weights the flag is refused in one line before anything is read."""
    from bigearth_cli.cli import main as cli
    from dataset_builder.sr.weights import MODELS
    clc = [a for c in sorted(synth_dir.glob("CLC_*.tif")) for a in ("--clc", str(c))]
    assert cli(["build", str(products[0]), *clc, "--out", str(tmp_path / "p"), "--sr-model", "paper", "--no-progress"]) == 0
    sr = json.loads((tmp_path / "p" / "manifest.json").read_text())["config"]["super_resolution"]
    paper = MODELS["paper"]
    assert sr["files"] == {paper.name: sha256_file(paper)} and sr["model"] == "paper"
    assert sr["nets"] == {"2": {"blocks": 6, "features": 128}, "6": {"blocks": 6, "features": 128}}
    # the same patches as the default model's build, other pixels in the super-resolved bands only
    up = DSen2(model="paper", precision="fp32")
    assert up.provenance["model"] == "paper" and up.nets[2].spec.features == 128
    capsys.readouterr()
    assert cli(["build", str(products[0]), *clc, "--out", str(tmp_path / "x"), "--sr-model", "paper",
                "--sr-weights", str(paper)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sr-model paper and --sr-weights" in err[0] and "give one" in err[0]
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_a_block_of_patches_is_each_patch_with_its_neighbours_and_refuses_a_partial_side():
    """upsample_block_of_patches: a 2 x 3 block at a tile's corner (its top and left sides missing,
    mirrored) gives each patch what upsample_with_context gives it alone; a side partly missing
    cannot be mirrored as one and is refused."""
    up = upsample.get("bicubic")
    rng = np.random.default_rng(5)
    win = lambda: (None, rng.uniform(0, 4000, (6, 60, 60)).astype(np.float32),  # noqa: E731
                   rng.uniform(0, 4000, (2, 20, 20)).astype(np.float32))
    grid = [[None] * 5] + [[None] + [win() for _ in range(4)] for _ in range(3)]  # 4 x 5 with the ring
    outs = upsample.upsample_block_of_patches(up, grid)
    assert len(outs) == 2 and len(outs[0]) == 3
    for j in range(2):
        for i in range(3):
            nb = {(dy, dx): grid[1 + j + dy][1 + i + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)}
            np.testing.assert_array_equal(outs[j][i], upsample.upsample_with_context(up, *grid[1 + j][1 + i], nb))
    grid[3][2] = None  # the bottom side of the top 2 x 3 block: partly missing
    with pytest.raises(ValueError, match="partly missing"):
        upsample.upsample_block_of_patches(up, grid)
