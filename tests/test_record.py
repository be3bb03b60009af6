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


def test_the_outputs_take_their_fields_from_the_record(built, tmp_path):
    """One definition: the archive's datasets, the shards' meta.json and the TFDS metadata are
    the record's fields, and a record survives archive -> shard -> record unchanged."""
    import json

    import h5py

    import shards
    from bigearth.record import META_FIELDS
    from dataset_builder import archive
    from dataset_builder.build import ARCHIVE_NAME

    path = built[0] / ARCHIVE_NAME
    with h5py.File(path, "r") as f:
        # the record's fields, and the archive's own check of them (not a field: never read as one)
        assert set(f) == set(ARRAYS) | set(META_FIELDS) | {archive.PIXEL_DIGESTS}
    rec = next(archive.iter_records(path))
    sample = shards.encode(rec, shard="0" * 64)  # as the writer encodes it, naming its shard
    assert list(json.loads(sample["meta.json"])) == [*META_FIELDS, "shard", "crc32c", "crc32c_meta"]
    assert shards.decode(sample) == rec
    index = shards.write_shards(path, tmp_path / "s", "4MB", progress=False)
    assert index["members"]["meta.json"]["keys"] == [*META_FIELDS, "shard", "crc32c", "crc32c_meta"]


def test_writers_are_held_to_the_record(tmp_path):
    from bigearth.record import RecordBatch
    from dataset_builder import archive

    good, other = _record(), _record(name="S2A_MSIL2A_20170613T101031_3_2", x=3)
    other.data_super[0, 0, 0] = 7  # a different patch, so order matters
    arrays = {k: getattr(good, k)[None] for k in ARRAYS}
    assert len(RecordBatch(arrays, [good.meta()])) == 1
    with pytest.raises(ValueError, match="fields"):
        RecordBatch(arrays, [{**good.meta(), "cloud_cover": 0.1}])  # a field the record does not have
    with pytest.raises(ValueError, match="classes_19"):
        RecordBatch({**arrays, "classes_19": arrays["classes_19"][:, :5]}, [good.meta()])
    with pytest.raises(ValueError, match="not fields of the record"):
        RecordBatch({**arrays, "data_5m": arrays["data_10m"]}, [good.meta()])
    with pytest.raises(ValueError, match="split must be one of"):
        RecordBatch(arrays, [{**good.meta(), "split": "holdout"}])
    w = archive.PartWriter(tmp_path / "p.h5")
    with pytest.raises(TypeError, match="RecordBatch"):
        w.append(arrays)  # a bare column dict is not a batch of records
    w.abort()
    assert not list(tmp_path.iterdir())
    # records -> batch -> part -> records: the same records, in order
    batch = RecordBatch.of([good, other])
    assert list(batch) == [good, other]
    w = archive.PartWriter(tmp_path / "p.h5")
    w.append(batch)
    w.close()
    assert list(archive.iter_records(tmp_path / "p.h5")) == [good, other]


def test_record_schema_is_enforced():
    good = dict(name="n", product="p", tile="T33UUP", date="2017-01-01T00:00:00", x=0, y=0, crs="EPSG:32633",
                bounds=(0, 0, 0, 0), split="train", data_super=np.zeros((12, 120, 120), np.uint16),
                data_10m=np.zeros((4, 120, 120), np.uint16), data_20m=np.zeros((6, 60, 60), np.uint16),
                data_60m=np.zeros((2, 20, 20), np.uint16), classes=np.zeros(43, np.uint8),
                classes_19=np.zeros(19, np.uint8))
    PatchRecord(**good)
    with pytest.raises(ValueError, match="data_20m"):
        PatchRecord(**{**good, "data_20m": np.zeros((6, 120, 120), np.uint16)})
