"""bigearth/files.py: the atomic write and the resume marker, checked on the files themselves."""
import hashlib
import json

import pytest

from bigearth.files import atomic_path, done_record, mark_done, write_text


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporary left


def _made(tmp_path, data=b"0123456789" * 100):
    out = tmp_path / "part.bin"
    out.write_bytes(data)
    marker = tmp_path / "part.json"
    mark_done(marker, out, "fp1", {"kept": 7})
    return out, marker


def test_marker_records_the_outputs_own_digest_and_size(tmp_path):
    out, marker = _made(tmp_path)
    doc = json.loads(marker.read_text())
    assert doc["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert doc["bytes"] == 1000
    assert done_record(marker, out, "fp1") == {"kept": 7}


@pytest.mark.parametrize("change", ["fingerprint", "same-size-content", "truncated", "output-gone",
                                    "marker-garbage", "marker-not-object", "marker-gone"])
def test_any_change_means_the_work_is_redone(tmp_path, change):
    out, marker = _made(tmp_path)
    fp = "fp1"
    if change == "fingerprint":
        fp = "fp2"
    elif change == "same-size-content":
        out.write_bytes(b"x" * 1000)
    elif change == "truncated":
        out.write_bytes(out.read_bytes()[:-1])
    elif change == "output-gone":
        out.unlink()
    elif change == "marker-garbage":
        marker.write_bytes(b"\xff{not json")
    elif change == "marker-not-object":
        marker.write_text("[1, 2]")
    elif change == "marker-gone":
        marker.unlink()
    assert done_record(marker, out, fp) is None
