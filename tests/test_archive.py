"""The HDF5 archive: merging parts in either mode, the empty case included."""
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from bigearth.record import ARRAYS
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
