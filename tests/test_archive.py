"""dataset_builder/archive.py: part files, their filters, and merging parts in either mode (the empty
case included)."""
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from bigearth.errors import InputError
from bigearth.record import ARRAYS, RecordBatch
from dataset_builder import archive

from .conftest import flip_byte


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
    # Blosc, lz4 (code 1), level 5, byte shuffle; then HDF5's Fletcher-32 checksum
    assert got == [(32001, (2, 2, 2, 345600, 5, 1, 1)), (3, ())]


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


@pytest.mark.parametrize("size", [0, 1, 2, 719, 720, 721, 7201, 345_601])
@pytest.mark.parametrize("fill", ["random", "zeros", "ones"])
def test_fletcher32_is_the_one_hdf5_computes(tmp_path, size, fill):
    """The checksum our threads append equals the one HDF5's own filter stores for the same bytes
    (uint8 chunks, so the filtered bytes are the data), including odd lengths and all-0xFF data,
    where the 16-bit folds do not fully reduce."""
    import struct
    rng = np.random.default_rng(size)
    data = {"random": rng.integers(0, 256, size), "zeros": np.zeros(size), "ones": np.full(size, 255)}[fill]
    data = data.astype(np.uint8)
    if size == 0:
        assert archive.fletcher32(b"") == 0
        return
    with h5py.File(tmp_path / "f.h5", "w") as f:
        ds = f.create_dataset("x", data=data[None], chunks=(1, size), fletcher32=True)
        raw = ds.id.read_direct_chunk((0, 0))[1]
    assert raw[:-4] == data.tobytes()
    assert archive.fletcher32(data.tobytes()) == struct.unpack("<I", raw[-4:])[0]


@pytest.mark.parametrize("compression", ["blosc-lz4", "gzip", "none"])
def test_a_changed_byte_in_a_chunk_is_a_read_error_naming_the_row(tmp_path, built, compression):
    """One bit flipped in the middle of a patch's chunk: without the checksum most such flips
    decode to other pixels; with it HDF5 refuses the chunk, and verify names dataset and row."""
    parts = sorted((built[0] / "parts").glob("*.h5"))
    recs = list(archive.iter_records(parts[0]))[:4]
    w = archive.PartWriter(tmp_path / "a.h5", compression, threads=2)
    w.append(RecordBatch.of(recs))
    w.close()
    assert archive.verify(tmp_path / "a.h5", allow_unchecked=True)["problems"] == []  # a part: no digests
    with h5py.File(tmp_path / "a.h5", "r") as f:
        info = f["data_20m"].id.get_chunk_info(2)
    flip_byte(tmp_path / "a.h5", info.byte_offset + info.size // 2)
    report = archive.verify(tmp_path / "a.h5", allow_unchecked=True)
    assert report["problems"] and all("'data_20m', row 2: cannot be read" in p for p in report["problems"]), report
    with h5py.File(tmp_path / "a.h5", "r") as f:
        f["data_20m"][3]  # the other rows still read
        with pytest.raises(OSError):
            f["data_20m"][2]


def test_a_changed_name_is_caught_by_meta_sha256(tmp_path, built):
    """The strings of the descriptive datasets sit in HDF5's global heap, which carries no
    checksum: a patch name changed in the file's bytes is caught by meta_sha256 alone."""
    from dataset_builder.build import ARCHIVE_NAME
    path = tmp_path / ARCHIVE_NAME
    path.write_bytes((built[0] / ARCHIVE_NAME).read_bytes())
    assert archive.verify(path) == {"patches": archive.verify(path)["patches"], "checksummed": True,
                                    "unchecked": [], "problems": []}
    with h5py.File(path, "r") as f:
        name = f["name"].asstr()[1]
    data = path.read_bytes()
    at = data.find(name.encode())
    assert at > 0 and data.count(name.encode()) == 1
    flip_byte(path, at + len(name) - 1)  # the last digit of y: another valid-looking name
    with h5py.File(path, "r") as f:
        assert f["name"].asstr()[1] != name  # HDF5 reads the changed name without complaint
    report = archive.verify(path)
    assert len(report["problems"]) == 1 and "differ from the meta_sha256" in report["problems"][0]


def test_an_archive_without_checksums_says_so(tmp_path, built):
    parts = sorted((built[0] / "parts").glob("*.h5"))
    recs = list(archive.iter_records(parts[0]))[:3]
    w = archive.PartWriter(tmp_path / "p.h5", checksums=False)
    w.append(RecordBatch.of(recs))
    w.close()
    archive.merge([tmp_path / "p.h5"], tmp_path / "a.h5", {}, archive.DEFAULT_COMPRESSION, checksums=False)
    refused = archive.verify(tmp_path / "a.h5")  # its values cannot be checked: refused unless on purpose
    assert len(refused["problems"]) == 1 and "--unchecked-archive" in refused["problems"][0]
    report = archive.verify(tmp_path / "a.h5", allow_unchecked=True)
    assert not report["checksummed"] and report["problems"] == []
    assert set(report["unchecked"]) >= {"data_super", "classes", "name", "meta_sha256"}


def test_the_way_to_read_a_blosc_archive_is_in_it_and_works(built):
    """The archive names its filter and both ways to read it in attributes any HDF5 reader opens
    without the plugin; and the second way works: plain h5py (no hdf5plugin imported) reads the
    patch arrays once HDF5_PLUGIN_PATH points at hdf5plugin's plugins, and fails without it."""
    import os
    import subprocess
    import sys

    from dataset_builder.build import ARCHIVE_NAME
    path = built[0] / ARCHIVE_NAME
    with h5py.File(path, "r") as f:
        for note in (f.attrs["reading_note"], f["data_super"].attrs["reading_note"]):
            assert "import hdf5plugin" in note and "HDF5_PLUGIN_PATH" in note and "32001" in note
    read = f"import h5py; print(int(h5py.File({str(path)!r}, 'r')['data_super'][0].sum()))"
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    bare = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True, env=env)
    assert bare.returncode != 0 and "plugin" in bare.stderr
    ok = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True,
                        env={**env, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH})
    with h5py.File(path, "r") as f:
        assert ok.returncode == 0 and int(ok.stdout) == int(f["data_super"][0].sum())


def test_readme_snippet_reads_the_archive(built):
    """The README's HDF5 snippet, run on a built archive, gives its first patch and labels."""
    import re
    from pathlib import Path

    from dataset_builder.build import ARCHIVE_NAME
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(r"<!-- snippet: hdf5 -->\n```python\n(.*?)```", readme, re.S)
    assert m, "README snippet hdf5 not found"
    ns: dict = {}
    exec(m.group(1).replace("out/demo/dataset/bigearth_sr.h5", str(built[0] / ARCHIVE_NAME)), ns)
    first = next(archive.iter_records(built[0] / ARCHIVE_NAME))
    np.testing.assert_array_equal(ns["x"], first.data_super)
    np.testing.assert_array_equal(ns["y"], first.classes)


def test_every_row_carries_the_digests_of_its_arrays(built):
    """``pixel_digests``: XXH3-64 of each row's arrays as decoded, one column per array, computed
    here from the values read back (an independent path: h5py's decode, xxhash directly)."""
    import h5py
    import xxhash

    from dataset_builder import archive as arch
    with h5py.File(built[0] / "bigearth_sr.h5", "r") as f:
        stored = f[arch.PIXEL_DIGESTS][:]
        columns = [str(c) for c in f[arch.PIXEL_DIGESTS].attrs["columns"]]
        assert stored.shape == (f["name"].shape[0], 4) and sorted(columns) == \
            ["data_10m", "data_20m", "data_60m", "data_super"]
        for i in range(0, stored.shape[0], 5):
            for j, key in enumerate(columns):
                assert int(stored[i, j]) == xxhash.xxh3_64_intdigest(f[key][i].astype("<u2").tobytes())


@pytest.mark.parametrize("given, message", [
    ("folder", r"is a build's folder \(it holds .*bigearth_sr\.h5\), not an archive"),
    ("tar", r"is a tar file \(a shard\?\), not an HDF5 archive"),
    ("parquet", r"is a parquet file, not an HDF5 archive"),
])
def test_a_path_of_another_kind_is_named(built, written, given, message):
    """``info`` (and every archive reader) on a folder, a shard or the catalogue: one line saying
    what was given, not HDF5's "[Errno 21]" (issue 35, part 8)."""
    path = {"folder": built[0], "tar": next(written[2].glob("*.tar")), "parquet": built[0] / "patches.parquet"}[given]
    with pytest.raises(InputError, match=message):
        with archive.reading(path):
            pass
