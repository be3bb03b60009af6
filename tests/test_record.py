"""The patch record: validation and value equality."""
import dataclasses

import numpy as np
import pytest

from bigearth.record import ARRAYS, PatchRecord


def _record(**over) -> PatchRecord:
    arrays = {k: np.zeros(shape, dtype) for k, (shape, dtype) in ARRAYS.items()}
    fields = dict(name="S2A_MSIL2A_20170613T101031_1_2", product="p", tile="T33UUP", date="2017-06-13T10:10:31",
                  x=1, y=2, crs="EPSG:32633", bounds=(0.0, 1200.0, 1200.0, 0.0), split="train", **arrays)
    fields.update(over)
    return PatchRecord(**fields)


def test_records_compare_by_value_arrays_included():
    a, b = _record(), _record()
    assert a == b  # raised before: the dataclass __eq__ compared arrays with ==
    c = dataclasses.replace(b, data_10m=b.data_10m.copy())
    c.data_10m[0, 0, 0] = 1
    assert a != c
    assert a != dataclasses.replace(b, split="test")
    assert a != "not a record"


def test_records_check_their_arrays_and_split():
    with pytest.raises(ValueError, match="data_20m must be uint16"):
        _record(data_20m=np.zeros((6, 60, 60), np.float32))
    with pytest.raises(ValueError, match="split must be one of"):
        _record(split="holdout")
