"""dataset_builder/patch_ingest.py: the one per-patch loop of the v1 and v2 ingests, on a stub
source whose folders each meet one fate (kept, screened, failed, unlabelled), checked against
the part file it writes and the counts it returns."""
import h5py
import numpy as np

from bigearth import nomenclature as nom
from bigearth.errors import InputError
from bigearth.record import BAND_RESOLUTION, BANDS_10M, BANDS_20M, BANDS_60M, PATCH_PX
from dataset_builder.build import BuildConfig
from dataset_builder.patch_ingest import PatchSource, ingest


def _bands(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b: rng.integers(1, 5000, (PATCH_PX * 10 // BAND_RESOLUTION[b],) * 2).astype(np.uint16)
            for b in BANDS_10M + BANDS_20M + BANDS_60M}


def test_each_folder_meets_its_fate_and_the_kept_are_written_in_row_order(tmp_path):
    fates = {(0, 0): "kept", (1, 0): "screened", (0, 1): "bad", (1, 1): "unlabelled", (2, 1): "kept"}
    folders = []
    for (x, y), fate in fates.items():
        f = tmp_path / "in" / f"P_{x}_{y}"
        f.mkdir(parents=True)
        (f / "band.tif").write_bytes(b"")
        if fate == "kept":
            (f / "notes.txt").write_text("a stray")
        folders.append(f)
    xy = {f: tuple(map(int, f.name.split("_")[1:])) for f in folders}
    c43 = nom.multi_hot_from_names(["Pastures"])
    reads = []

    def read(f):
        reads.append(f.name)
        if fates[xy[f]] == "bad":
            raise InputError(f / "band.tif", "unreadable")
        return {"name": f.name, "x": xy[f][0], "y": xy[f][1], "bands": _bands(xy[f][0] + 10 * xy[f][1]),
                "fate": fates[xy[f]]}

    source = PatchSource(
        xy=xy.__getitem__, read=read,
        labels=lambda p: None if p["fate"] == "unlabelled" else (c43, nom.to_19(c43)),
        meta=lambda p: {"name": p["name"], "product": "P", "tile": "T00AAA", "date": "2020-01-01T00:00:00",
                        "split": "train", "crs": "EPSG:32633", "x": p["x"], "y": p["y"],
                        "bounds": [0.0, 1200.0, 1200.0, 0.0], "v1_name": "", "s1_name": ""},
        strays=lambda f: {str(e): "stray" for e in f.iterdir() if e.name != "band.tif"},
        screen=lambda f: "cloud_list" if fates[xy[f]] == "screened" else None)
    cfg = BuildConfig(out_dir=str(tmp_path / "out"), upsampling="bilinear", progress=False)
    steps = []
    res = ingest(source, folders, cfg, tmp_path / "part.h5", steps.append, drops={"snow_list": 0, "cloud_list": 0})
    assert res["kept"] == 2 and res["drops"] == {"snow_list": 0, "cloud_list": 1, "no_labels": 1}
    assert list(res["failed_inputs"]) == ["P_0_1"] and "unreadable" in res["failed_inputs"]["P_0_1"]
    assert set(res["inputs_ignored"]) == {str(tmp_path / "in" / n / "notes.txt") for n in ("P_0_0", "P_2_1")}
    assert len(steps) == len(folders)
    # every good folder is read once, a screened one too (it is imagery: its neighbours' context)
    assert sorted(r for r in reads if r != "P_0_1") == ["P_0_0", "P_1_0", "P_1_1", "P_2_1"]
    with h5py.File(tmp_path / "part.h5", "r") as f:
        assert list(f["name"].asstr()[:]) == ["P_0_0", "P_2_1"]  # row-major: y first
        for row, (x, y) in enumerate([(0, 0), (2, 1)]):
            bands = _bands(x + 10 * y)
            np.testing.assert_array_equal(f["data_10m"][row], np.stack([bands[b] for b in BANDS_10M]))
            np.testing.assert_array_equal(f["data_60m"][row], np.stack([bands[b] for b in BANDS_60M]))
            np.testing.assert_array_equal(f["classes"][row], c43)


def test_an_acquisitions_patches_adapt_dsen2_once_from_mosaics_of_neighbours(tmp_path):
    """BigEarthNet folders with --sr-adapt: one adapted set per tile source, learnt from its own
    patches; interior patches join their eight neighbours into 360 px mosaics, large enough for
    the 6x protocol, so both networks adapt."""
    from dataset_builder import archive
    from dataset_builder.build import ARCHIVE_NAME, build
    from dataset_builder.synth import SynthConfig, write_product

    from .conftest import write_ben

    # a clear 4 x 4 patch tile: every patch kept, so the four interior ones have all their neighbours
    write_product(SynthConfig(tile_size_m=4800, seed=5, cloud_cover=0, snow_cover=0), tmp_path / "p")
    build(sorted((tmp_path / "p").glob("*.SAFE")), BuildConfig(out_dir=str(tmp_path / "b"), upsampling="bilinear",
          clc=[str(c) for c in (tmp_path / "p").glob("CLC_*.tif")], progress=False))
    recs = list(archive.iter_records(tmp_path / "b" / ARCHIVE_NAME))
    prod = recs[0].product
    assert len(recs) == 16
    write_ben(tmp_path / "ben", recs, prod + ".SAFE")
    cfg = BuildConfig(out_dir=str(tmp_path / "o"), progress=False, sr_adapt=2, sr_precision="fp32")
    m = build([tmp_path / "ben"], cfg)
    assert not m["tiles_failed"] and list(m["tiles"]) == [prod]
    nets = m["tiles"][prod]["sr_adapted"]["nets"]
    assert nets["2"]["steps"] == 2 and nets["6"]["steps"] == 2, nets
    assert nets["6"]["pairs"] == 4 and nets["2"]["pairs"] == 16 and len(nets["2"]["sha256"]) == 64


def _smooth_tile(nx: int, ny: int, seed: int) -> dict:
    """One tile's bands as smooth fields (neighbouring patches continue each other), cut later."""
    rng = np.random.default_rng(seed)
    out = {}
    for b in BANDS_10M + BANDS_20M + BANDS_60M:
        f = BAND_RESOLUTION[b] // 10
        a = rng.normal(size=(ny * PATCH_PX // f, nx * PATCH_PX // f)).cumsum(0).cumsum(1)
        out[b] = ((a - a.min()) / np.ptp(a) * 4000 + 100).astype(np.uint16)
    return out


def test_blocks_of_patches_give_what_each_patch_with_its_neighbours_gives(tmp_path, monkeypatch):
    """Patches are super-resolved a block at a time (a run along the row and rows below it, each
    side of the ring around it wholly there or wholly missing: at the tile's edges too); every
    patch's data_super is bit for bit what ``upsample_with_context`` gives it alone with its
    neighbours (mirrored where one is missing, as at the hole), and the method is called far fewer
    times than there are patches. A block whose output fails the
    method's check is redone patch by patch: only the failing patch fails."""
    from dataset_builder import patch_ingest, upsample
    from dataset_builder.sr.infer import DSen2

    from .test_sr_model import tiny_bundle
    nx, ny = 7, 6
    tile = _smooth_tile(nx, ny, 4)
    holes, screened = {(4, 2)}, {(1, 3)}
    places = [(x, y) for y in range(ny) for x in range(nx) if (x, y) not in holes]
    bands = {(x, y): {b: a[y * a.shape[0] // ny:(y + 1) * a.shape[0] // ny, x * a.shape[1] // nx:(x + 1) * a.shape[1] // nx]
                      for b, a in tile.items()} for x, y in places}
    folders = {tmp_path / f"P_{x}_{y}": (x, y) for x, y in places}
    c43 = nom.multi_hot_from_names(["Pastures"])
    source = PatchSource(
        xy=folders.__getitem__, read=lambda f: {"name": f.name, "x": folders[f][0], "y": folders[f][1],
                                                "bands": bands[folders[f]]},
        labels=lambda p: (c43, nom.to_19(c43)),
        meta=lambda p: {"name": p["name"], "product": "P", "tile": "T00AAA", "date": "2020-01-01T00:00:00",
                        "split": "train", "crs": "EPSG:32633", "x": p["x"], "y": p["y"],
                        "bounds": [0.0, 1200.0, 1200.0, 0.0], "v1_name": "", "s1_name": ""},
        strays=lambda f: {}, screen=lambda f: "cloud_list" if folders[f] in screened else None)
    weights = str(tiny_bundle(tmp_path / "w.npz"))
    cfg = BuildConfig(out_dir=str(tmp_path / "out"), sr_weights=weights, sr_precision="fp32", progress=False)
    calls = []
    real = DSen2.__call__
    monkeypatch.setattr(DSen2, "__call__", lambda self, *a, **k: calls.append(a[1].shape) or real(self, *a, **k))
    res = ingest(source, list(folders), cfg, tmp_path / "part.h5", drops={"cloud_list": 0})
    kept = [p for p in places if p not in screened]
    assert res["kept"] == len(kept) and not res["failed_inputs"]
    # edges and the hole's ring too: a side of a block wholly missing is mirrored as each patch would be
    assert len(calls) <= len(kept) // 3, calls
    assert max(s[2] for s in calls) > nx * PATCH_PX // 2  # a whole row of the tile in one call

    # independent: each patch alone with the neighbours it has, by the per-patch function
    up = DSen2(weights, precision="fp32")
    f32 = lambda p: (np.stack([bands[p][b] for b in BANDS_10M]).astype(np.float32),  # noqa: E731
                     np.stack([bands[p][b] for b in BANDS_20M]).astype(np.float32),
                     np.stack([bands[p][b] for b in BANDS_60M]).astype(np.float32))
    with h5py.File(tmp_path / "part.h5", "r") as f:
        assert [(int(x), int(y)) for x, y in zip(f["x"][:], f["y"][:])] == kept
        for row, (x, y) in enumerate(kept):
            nb = {(dy, dx): f32((x + dx, y + dy)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  if (dy, dx) != (0, 0) and (x + dx, y + dy) in bands}
            want = upsample.assemble_super(f32((x, y))[0].astype(np.uint16), upsample.upsample_with_context(up, *f32((x, y)), nb))
            np.testing.assert_array_equal(f["data_super"][row], want, err_msg=str((x, y)))

    # one patch's output out of range: its block is redone patch by patch, and that patch alone fails
    from dataset_builder.sr import infer
    bad, m = f32((2, 1))[1], 3 * up.halo

    def check(out, b20, b60, files):  # fails every call whose patches include (2, 1)
        rows, cols = ((n - 2 * m) // 60 for n in b20.shape[1:])
        if any(np.array_equal(b20[:, m + j * 60:m + (j + 1) * 60, m + i * 60:m + (i + 1) * 60], bad)
               for j in range(rows) for i in range(cols)):
            raise InputError("w.npz", "DSen2 produced B05 values out of any plausible range")
    monkeypatch.setattr(infer, "check_output", check)
    res = ingest(source, list(folders), cfg, tmp_path / "part2.h5", drops={"cloud_list": 0})
    assert list(res["failed_inputs"]) == ["P_2_1"] and "out of any plausible range" in res["failed_inputs"]["P_2_1"]
    assert res["kept"] == len(kept) - 1
