"""bigearth/files.py: the atomic write and the resume marker, checked on the files themselves."""
import hashlib
import json

import pytest

from bigearth.errors import InputError
from bigearth.files import atomic_path, content_digest, done_record, mark_done, read_digested, recording_reads, write_text


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


def _tree(root):
    (root / "sub").mkdir(parents=True)
    (root / "a.tif").write_bytes(b"A" * 300)
    (root / "b.json").write_text("{}")
    (root / "sub" / "c.tif").write_bytes(b"C" * 10)
    return root


def test_folder_digest_is_of_relative_names_sizes_and_contents(tmp_path):
    root = _tree(tmp_path / "p")
    want = hashlib.sha256()
    for rel in ("a.tif", "b.json", "sub/c.tif"):
        data = (root / rel).read_bytes()
        want.update(f"{rel}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    assert content_digest(root) == want.hexdigest()
    (tmp_path / "elsewhere").mkdir()
    moved = root.rename(tmp_path / "elsewhere" / "q")
    assert content_digest(moved) == want.hexdigest()  # names of the folder itself do not count


def test_a_digest_recorded_while_reading_is_of_the_bytes_used(tmp_path):
    root = _tree(tmp_path / "p")
    before = content_digest(root)
    with recording_reads() as read:
        assert read_digested(root / "a.tif") == b"A" * 300
    assert len(read) == 1
    (root / "a.tif").write_bytes(b"Z" * 300)  # changed after the work read it
    assert content_digest(root, read) == before  # describes what the work used: a rerun sees the change
    assert content_digest(root) != before
    assert read_digested(root / "a.tif") == b"Z" * 300  # outside a recording nothing is kept
    assert len(read) == 1


def test_a_file_changing_while_it_is_read_is_named(tmp_path, monkeypatch):
    import os

    path = tmp_path / "a.tif"
    path.write_bytes(b"A" * 300)
    real = os.fstat
    calls = []

    def fstat(fd):
        calls.append(fd)
        st = real(fd)
        if len(calls) == 2:  # as if written between the two looks
            return os.stat_result((*st[:8], st.st_mtime + 1, st.st_ctime + 1))
        return st

    monkeypatch.setattr(os, "fstat", fstat)
    with pytest.raises(InputError, match="changed while it was being read") as e:
        read_digested(path)
    assert str(path) in str(e.value)


def test_files_digested_on_entering_are_described_as_the_work_found_them(tmp_path):
    table = tmp_path / "metadata.parquet"
    table.write_bytes(b"rows v1")
    with recording_reads(digest_now=[table]) as read:
        table.write_bytes(b"rows v2")  # changed while the work ran on what it had read before
    assert content_digest(table, read) == hashlib.sha256(b"rows v1").hexdigest()
    assert content_digest(table) == hashlib.sha256(b"rows v2").hexdigest()


def test_what_is_names_what_was_given(built, written, tmp_path):
    """The words the readers use when one kind of path is given where another is wanted (issue 35)."""
    from bigearth.files import what_is
    from dataset_builder.build import ARCHIVE_NAME
    sdir = written[2]
    tar = next(sdir.glob("*.tar"))
    (tmp_path / "x.json").write_text("{}")
    (tmp_path / "x.bin").write_bytes(b"\x00" * 600)
    assert what_is(tmp_path / "nope") == "nothing (no such file or folder)"
    assert what_is(built[0]).startswith("a build's folder") and what_is(sdir).startswith("a shards folder")
    assert what_is(tmp_path) == "a folder" and what_is(built[0] / ARCHIVE_NAME).startswith("an HDF5 file")
    assert what_is(tar).startswith("a tar file") and what_is(built[0] / "patches.parquet") == "a parquet file"
    assert what_is(tmp_path / "x.json") == "a JSON file" and what_is(tmp_path / "x.bin") == "a file"
