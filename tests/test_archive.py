"""dataset_builder/archive.py: part files, their filters, and merging parts in either mode (the empty
case included)."""
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from bigearth.record import ARRAYS, RecordBatch
from dataset_builder import archive


@pytest.mark.parametrize("mode", ["copy", "virtual"])
def test_merging_no_part_gives_an_empty_archive_with_the_schema(tmp_path, mode):
    n = archive.merge([], tmp_path / "a.h5", {"k": 1}, archive.DEFAULT_COMPRESSION, mode)  # IndexError before
    assert n == 0
    with h5py.File(tmp_path / "a.h5", "r") as f:
        for key, (shape, dtype) in ARRAYS.items():
            assert f[key].shape == (0, *shape) and f[key].dtype == np.dtype(dtype)
        assert f["name"].shape == (0,) and f.attrs["merge"] == mode


def test_part_filters_are_read_through_the_public_api(tmp_path, built):
    parts = sorted((built[0] / "parts").glob("*.h5"))
    with h5py.File(parts[0], "r") as f:
        got = archive.filters(f["data_super"])
    assert got == [(32001, (2, 2, 2, 345600, 5, 1, 1))]  # Blosc, lz4 (code 1), level 5, byte shuffle


def test_threaded_chunks_decode_with_the_standard_hdf5_filters(tmp_path):
    """Chunks compressed by our threads read back through h5py's own shuffle+deflate filters."""
    rng = np.random.default_rng(0)
    arrays = {k: rng.integers(0, 3000 if "data" in k else 2, (5, *shape)).astype(dtype)
              for k, (shape, dtype) in __import__("bigearth.record", fromlist=["ARRAYS"]).ARRAYS.items()}
    meta = [{"name": f"n{i}", "product": "p", "tile": "T", "date": "d", "split": "train", "crs": "EPSG:1",
             "x": i, "y": 0, "bounds": [0, 0, 0, 0], "v1_name": "", "s1_name": ""} for i in range(5)]
    for comp in ("gzip", "none", "lzf", "blosc-lz4", "blosc2-zstd"):
        w = archive.PartWriter(tmp_path / f"{comp}.h5", comp, threads=2)
        w.append(RecordBatch({k: v[:2] for k, v in arrays.items()}, meta[:2]))
        w.append(RecordBatch({k: v[2:] for k, v in arrays.items()}, meta[2:]))
        w.close()
        with h5py.File(tmp_path / f"{comp}.h5", "r") as f:
            for k, v in arrays.items():
                np.testing.assert_array_equal(f[k][:], v, err_msg=f"{comp} {k}")
            if comp == "gzip":
                assert f["data_super"].compression == "gzip" and f["data_super"].shuffle
