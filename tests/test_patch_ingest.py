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
