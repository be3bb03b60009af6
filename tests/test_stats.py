"""Band statistics: exact, combinable, per split, and the normalisation fitted on training patches only."""
import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from dataset_builder.archive import ARRAY_KEYS
from dataset_builder.build import ARCHIVE_NAME
from dataset_builder.stats import BandStats, SplitStats, of_archive


def test_per_split_statistics_equal_numpy_and_the_normalisation_ignores_test_patches(built):
    out, manifest, _ = built
    with h5py.File(out / ARCHIVE_NAME, "r") as f:
        split = f["split"].asstr()[:]
        cubes = {k: f[k][:].astype(np.float64) for k in ARRAY_KEYS}
    assert len(set(split)) > 1
    for s, doc in manifest["band_stats_per_split"].items():
        rows = split == s
        for k in ARRAY_KEYS:
            np.testing.assert_allclose(doc[k]["mean"], cubes[k][rows].mean(axis=(0, 2, 3)), rtol=1e-6, atol=1e-3)
            np.testing.assert_allclose(doc[k]["std"], cubes[k][rows].std(axis=(0, 2, 3)), rtol=1e-5, atol=1e-3)
    norm = manifest["band_stats"]
    assert norm["fitted_on"] == "train"
    assert {k: norm[k] for k in ARRAY_KEYS} == manifest["band_stats_per_split"]["train"]
    # the test patches change nothing: pooled statistics differ from the normalisation's
    pooled = cubes["data_super"].mean(axis=(0, 2, 3))
    assert not np.allclose(norm["data_super"]["mean"], pooled, atol=1e-3)


def test_sums_combine_exactly_in_any_order(built):
    out, manifest, _ = built
    with h5py.File(out / ARCHIVE_NAME, "r") as f:
        whole = of_archive(f)
        arrays = {k: f[k][:] for k in ARRAY_KEYS}
        split = f["split"].asstr()[:]
    # the same patches added one by one in reverse order, through JSON
    parts = SplitStats()
    for i in range(len(split) - 1, -1, -1):
        one = SplitStats()
        one.add({k: arrays[k][i:i + 1] for k in ARRAY_KEYS}, split[i:i + 1])
        parts.merge(one.to_json())
    assert parts.to_json() == whole.to_json()
    assert whole.normalisation() == manifest["band_stats"]


def test_without_a_training_split_all_patches_are_pooled():
    rng = np.random.default_rng(0)
    arrays = {k: rng.integers(0, 10000, (4, *shape)).astype(np.uint16)
              for k, shape in (("data_super", (12, 8, 8)), ("data_10m", (4, 8, 8)), ("data_20m", (6, 4, 4)),
                               ("data_60m", (2, 2, 2)))}
    st = SplitStats()
    st.add(arrays, ["none"] * 4)
    norm = st.normalisation()
    assert norm["fitted_on"].startswith("all splits")
    np.testing.assert_allclose(norm["data_10m"]["mean"], arrays["data_10m"].mean(axis=(0, 2, 3)), atol=1e-4)
    assert BandStats().empty and not st.by_split["none"].empty
