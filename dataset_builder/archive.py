"""The HDF5 archive: the paper's datasets (data_super, data_10m, data_20m, data_60m, classes)
plus classes_19, names and georeference, one patch per chunk.

The archive checks itself, with what any HDF5 reader understands: every chunk of every dataset
carries HDF5's Fletcher-32 checksum (filter 3; the library verifies it on each read, so damaged
bytes are a read error, never wrong pixels), the object headers and chunk indexes of the v1.10
format carry their own checksums, and the one part outside both, the variable-length strings of
the descriptive datasets, is digested into the root attribute ``meta_sha256`` (``verify``).

Each tile is written to its own part file (by whichever worker or rank built it); the parts
are then merged into one archive, either by copying the compressed chunks as they are (no
recompression; the default) or as an HDF5 virtual dataset over the parts.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import hdf5plugin  # registers the Blosc filters with HDF5 for every reader of this module
import numpy as np

from bigearth import nomenclature as nom
from bigearth.errors import InputError
from bigearth.files import atomic_path, check_field_digests, sha256_file, what_is
from bigearth.record import (ARRAYS, BAND_RESOLUTION, BANDS_10M, BANDS_20M, BANDS_60M, BANDS_SUPER, META_FIELDS,
                             VALUE_CONVENTION, META_DEFAULTS, PatchRecord, RecordBatch)

# from the record's definition: the image cubes, then the label vectors
ARRAY_KEYS = tuple(k for k in ARRAYS if k.startswith("data_"))
LABEL_KEYS = tuple(k for k in ARRAYS if k not in ARRAY_KEYS)
STR = h5py.string_dtype("utf-8")
# the descriptive datasets, from the record's definition: strings as UTF-8, numbers as declared
META: dict[str, tuple[object, tuple[int, ...]]] = {
    k: (STR if kind == "str" else np.dtype(kind), shape) for k, (kind, shape) in META_FIELDS.items()}
# Filters for the patch arrays, measured in benchmarks/RESULTS.md. blosc-lz4 (default) writes
# ~12x and reads ~4x faster than gzip for a 13 % larger file; readers need `import hdf5plugin`.
# gzip (shuffle + deflate 1) is readable by every HDF5 library without plugins.
COMPRESSIONS = {
    "none": {},
    "blosc-lz4": dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)),
    "blosc2-zstd": dict(hdf5plugin.Blosc2(cname="zstd", clevel=1, filters=hdf5plugin.Blosc2.SHUFFLE)),
    "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "lzf": {"compression": "lzf", "shuffle": True},
}
DEFAULT_COMPRESSION = "blosc-lz4"
BAND_ATTRS = {"data_super": (BANDS_SUPER, 10), "data_10m": (BANDS_10M, 10), "data_20m": (BANDS_20M, 20),
              "data_60m": (BANDS_60M, 60)}


CHECKSUM_FILTER = h5py.h5z.FILTER_FLETCHER32
CHECKSUMS = ("every chunk: HDF5 Fletcher-32 (filter 3, checked by the HDF5 library on every read); "
             "the descriptive datasets' values: sha256 in meta_sha256 (bigearth-sr info --verify)")


# (rows, len(ARRAY_KEYS)) uint64: XXH3-64 of each row's arrays as decoded (little-endian uint16),
# one column per ARRAY_KEYS. Fletcher-32 catches damage, not an edit: h5py recomputes it on write.
# These travel with the archive, themselves under its digests (``record_digests``). XXH3, not
# BLAKE2b: 0.035 against 0.56 ms a patch (benchmarks/RESULTS.md); it guards against edits and
# damage, as the sha256 digests of the whole do against forgery
PIXEL_DIGESTS = "pixel_digests"


def pixel_digest(a: np.ndarray) -> int:
    import xxhash
    return xxhash.xxh3_64_intdigest(np.ascontiguousarray(a, dtype="<u2"))


def pixel_digests(arrays: dict, k: int) -> np.ndarray:
    """The PIXEL_DIGESTS rows of ``k`` patches' arrays ({key: (k, ...) array})."""
    return np.array([[pixel_digest(arrays[key][i]) for key in ARRAY_KEYS] for i in range(k)], dtype=np.uint64)


def stored_pixel_digests(f: h5py.File) -> np.ndarray | None:
    """The archive's PIXEL_DIGESTS (None for an archive built before it carried them)."""
    return f[PIXEL_DIGESTS][:] if PIXEL_DIGESTS in f else None


def check_pixels(path, name: str, row: np.ndarray | None, arrays: dict) -> None:
    """An InputError naming the archive, the patch and the array when one of ``arrays`` ({key:
    one row's array}) is not what the build wrote (``row``: its PIXEL_DIGESTS row; None: nothing
    to check against)."""
    if row is None:
        return
    for key, a in arrays.items():
        if pixel_digest(a) != int(row[ARRAY_KEYS.index(key)]):
            raise InputError(path, f"patch {name}: its {key} differs from its digest (changed after its build; "
                                   f"rebuild it)")


def _create(f: h5py.File, compression: str, checksums: bool = True) -> None:
    """The empty datasets; ``checksums=False`` (no Fletcher-32) only to measure what they cost."""
    opts = COMPRESSIONS[compression]
    for key, (shape, dtype) in ARRAYS.items():
        if key in ARRAY_KEYS:
            f.create_dataset(key, (0, *shape), dtype, maxshape=(None, *shape), chunks=(1, *shape),
                             track_times=False, fletcher32=checksums, **opts)
        else:
            f.create_dataset(key, (0, *shape), dtype, maxshape=(None, *shape), chunks=(1024, *shape),
                             track_times=False, compression="gzip", shuffle=False, fletcher32=checksums)
    for key, (dtype, shape) in META.items():  # HDF5 takes no checksum filter on variable-length strings
        f.create_dataset(key, (0, *shape), dtype, maxshape=(None, *shape), chunks=(1024, *shape),
                         track_times=False, compression="gzip", fletcher32=checksums and dtype is not STR)
    ds = f.create_dataset(PIXEL_DIGESTS, (0, len(ARRAY_KEYS)), np.uint64, maxshape=(None, len(ARRAY_KEYS)),
                          chunks=(1024, len(ARRAY_KEYS)), track_times=False, fletcher32=checksums)
    ds.attrs["columns"] = list(ARRAY_KEYS)
    ds.attrs["digest"] = "XXH3-64 (xxhash) of the row's array as decoded (little-endian uint16)"


def describe(f: h5py.File, config: dict | None = None) -> None:
    """Attributes that make the archive self-describing."""
    for key, (bands, res) in BAND_ATTRS.items():
        f[key].attrs["bands"] = list(bands)
        f[key].attrs["resolution_m"] = res
        f[key].attrs["scale"] = 1e-4
        f[key].attrs["offset"] = 0.0
    f["data_super"].attrs["native_resolution_m"] = [BAND_RESOLUTION[b] for b in BANDS_SUPER]
    f["classes"].attrs["class_names"] = list(nom.CLASS_NAMES)
    f["classes"].attrs["clc_codes"] = list(nom.CLC_CODES)
    f["classes_19"].attrs["class_names"] = list(nom.CLASS_NAMES_19)
    f.attrs["value_convention"] = VALUE_CONVENTION
    f.attrs["patch_naming"] = "<mission>_MSIL2A_<datetime>_<x>_<y>, x/y = column/row in 1200 m steps from the tile's upper-left corner"
    if config is not None:
        f.attrs["build_config"] = json.dumps(config, sort_keys=True)


def shuffle_deflate(a: np.ndarray, level: int, checksum: bool = True) -> bytes:
    """One chunk through HDF5's shuffle + deflate filters, done here so that threads can share
    the work (zlib releases the GIL; h5py's own filter pipeline runs on one core)."""
    planes = np.ascontiguousarray(a.reshape(-1).view(np.uint8).reshape(-1, a.itemsize).T)
    raw = zlib.compress(planes, level)
    # Fletcher-32 is the pipeline's last filter: HDF5 stores it after the deflated bytes, little-endian
    return raw + fletcher32(raw).to_bytes(4, "little") if checksum else raw


def fletcher32(data: bytes) -> int:
    """HDF5's Fletcher-32 of a chunk's filtered bytes (``H5_checksum_fletcher32``: big-endian
    16-bit words, both sums folded every 360 words in 32-bit arithmetic), for the chunks this
    module compresses itself; HDF5 itself verifies the result on every read. Whole blocks are
    summed by numpy and only the folds run in Python (480 per 12-band patch)."""
    b = np.frombuffer(data, np.uint8)
    n = b.size // 2
    words = (b[:2 * n:2].astype(np.int64) << 8) | b[1:2 * n:2]
    s1 = s2 = 0
    mask = 0xFFFFFFFF

    def fold(x):
        return (x & 0xFFFF) + (x >> 16)

    full = n // 360
    blocks = []
    if full:
        w = words[:full * 360].reshape(full, 360)
        blocks = list(zip([360] * full, w.sum(1).tolist(), (w * np.arange(360, 0, -1)).sum(1).tolist()))
    rest = words[full * 360:]
    if rest.size:  # sum2 gains sum1 once per word: the block adds t * sum1 plus the words weighted t..1
        blocks.append((rest.size, int(rest.sum()), int((rest * np.arange(rest.size, 0, -1)).sum())))
    if b.size % 2:
        blocks.append((1, int(b[-1]) << 8, int(b[-1]) << 8))
    for t, total, weighted in blocks:
        s2 = (s2 + t * s1 + weighted) & mask
        s1 = (s1 + total) & mask
        s1, s2 = fold(s1), fold(s2)
    return ((fold(s2) << 16) | fold(s1)) & mask


class PartWriter:
    """Appends patches of one tile to a temporary file (``atomic_path``); ``close`` renames it
    into place, ``abort`` removes it."""

    def __init__(self, path, compression: str = DEFAULT_COMPRESSION, threads: int | None = None,
                 checksums: bool = True):
        self.path = Path(path)
        self._atomic = atomic_path(self.path)
        self.tmp = self._atomic.__enter__()
        # no chunk cache (every chunk is one patch, written once): a failed write (disk full) then
        # fails the call that made it; with a cache HDF5 crashed (SIGSEGV) at a later eviction
        self.f = h5py.File(self.tmp, "w", libver=("v110", "v110"), track_order=False, rdcc_nbytes=0)
        _create(self.f, compression, checksums)
        opts = COMPRESSIONS[compression]
        self.level = opts.get("compression_opts") if opts.get("compression") == "gzip" else None
        self.checksums = checksums
        self.pool = ThreadPoolExecutor(threads or os.cpu_count() or 1) if self.level is not None else None
        self.n = 0

    def append(self, batch: RecordBatch) -> None:
        """Add a batch of records (checked against the record's definition when it was made)."""
        if not isinstance(batch, RecordBatch):
            raise TypeError(f"PartWriter.append takes a RecordBatch, not {type(batch).__name__}")
        arrays, meta, k = batch.arrays, batch.meta, len(batch)
        if k == 0:
            return
        for key in ARRAYS:
            ds = self.f[key]
            ds.resize(self.n + k, axis=0)
            if self.pool is not None and key in ARRAY_KEYS:
                zeros = (0,) * (ds.ndim - 1)
                encode = functools.partial(shuffle_deflate, level=self.level, checksum=self.checksums)
                for i, raw in enumerate(self.pool.map(encode, arrays[key])):
                    ds.id.write_direct_chunk((self.n + i, *zeros), raw)
            else:
                ds[self.n:] = arrays[key]
        for key, (dtype, _) in META.items():
            ds = self.f[key]
            ds.resize(self.n + k, axis=0)
            values = [m[key] for m in meta]
            ds[self.n:] = values if dtype is STR else np.asarray(values, dtype=dtype)
        ds = self.f[PIXEL_DIGESTS]
        ds.resize(self.n + k, axis=0)
        ds[self.n:] = pixel_digests(arrays, k)
        self.n += k

    def close(self) -> Path:
        describe(self.f)
        self.f.close()
        if self.pool is not None:
            self.pool.shutdown()
        self._atomic.__exit__(None, None, None)  # renamed into place
        return self.path

    def abort(self) -> None:
        """Drop the partial file; never raises (closing may fail too when the disk is full)."""
        try:
            self.f.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away
            pass
        finally:
            if self.pool is not None:
                self.pool.shutdown()
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)  # removed


def merge(parts: list[Path], out: Path, config: dict, compression: str, mode: str = "copy",
          checksums: bool = True, band_stats: dict | None = None) -> int:
    """Merge part files, in the given order, into ``out`` (a temporary name: the caller renames
    it into place, ``bigearth.files.atomic_path``); returns the patch count. ``band_stats`` (the
    normalisation statistics of the build) are kept in the archive, under its digests."""
    out = tmp = Path(out)
    sizes = []
    for p in parts:
        with h5py.File(p, "r") as f:
            sizes.append(f["name"].shape[0])
    total = sum(sizes)
    if mode == "copy" and parts:
        # the first part, copied by the kernel, is the archive's start; later parts are appended
        # as compressed chunks (no decode, no re-encode)
        shutil.copyfile(parts[0], tmp)
    elif mode not in ("copy", "virtual"):
        raise ValueError(f"unknown merge mode {mode!r}")
    # no chunk cache: a failed write (disk full) then fails the call that made it; HDF5 crashed
    # when the failure came later, at a cache eviction
    with h5py.File(tmp, "r+" if mode == "copy" and parts else "w", libver=("v110", "v110"), rdcc_nbytes=0) as dst:
        if not parts:  # an empty archive with the full schema, whichever the mode
            _create(dst, compression, checksums)
        elif mode == "virtual":
            _merge_virtual(dst, parts, sizes, out.parent)
        else:
            for key in list(ARRAYS) + list(META) + [PIXEL_DIGESTS]:
                dst[key].resize(total, axis=0)
            off = sizes[0]
            for p, n in zip(parts[1:], sizes[1:]):
                with h5py.File(p, "r") as src:
                    for key in ARRAY_KEYS:
                        s, d = src[key], dst[key]
                        if filters(s) != filters(d):  # raw chunks are copied: both sides must encode alike
                            raise ValueError(f"{p}: part filters {filters(s)} differ from the archive's {filters(d)}")
                        zeros = (0,) * (s.ndim - 1)
                        for i in range(n):
                            mask, raw = s.id.read_direct_chunk((i, *zeros))
                            d.id.write_direct_chunk((off + i, *zeros), raw, mask)
                    for key in list(LABEL_KEYS) + list(META) + [PIXEL_DIGESTS]:
                        if n:
                            dst[key][off:off + n] = src[key][:]
                off += n
        describe(dst, config)
        dst.attrs["merge"] = mode
        dst.attrs["compression"] = compression
        if band_stats is not None:
            dst.attrs["band_stats"] = json.dumps(band_stats, sort_keys=True)
        if total:
            splits, counts = np.unique(dst["split"].asstr()[:], return_counts=True)
            dst.attrs["patches_per_split"] = json.dumps(dict(zip(splits.tolist(), map(int, counts))), sort_keys=True)
        if compression.startswith("blosc"):  # readable without the plugin: the way to read what needs it
            note = reading_note(compression)
            dst.attrs["reading_note"] = note
            for key in ARRAY_KEYS:
                dst[key].attrs["reading_note"] = note
        if checksums:  # last: the digests cover every attribute written above
            dst.attrs["checksums"] = CHECKSUMS
            dst.attrs["meta_sha256"] = meta_digest(dst)
            dst.attrs["digests"] = json.dumps(record_digests(dst), sort_keys=True)
    return total


def reading_note(compression: str) -> str:
    """How to read patch arrays written with a filter that is not part of every HDF5 library."""
    fid = COMPRESSIONS[compression]["compression"]
    return (f"the patch arrays ({', '.join(ARRAY_KEYS)}) use the {compression} filter (HDF5 filter {fid}), "
            f"which HDF5 libraries load as a plugin. Python: `import hdf5plugin` before h5py reads them. "
            f"Other readers (HDFView, MATLAB, h5dump, netCDF, C): set HDF5_PLUGIN_PATH to a folder holding the "
            f"plugin, e.g. the one `python -c 'import hdf5plugin; print(hdf5plugin.PLUGIN_PATH)'` prints. "
            f"Without a plugin: rebuild with --compression gzip.")


def filters(ds: h5py.Dataset) -> list[tuple]:
    """A dataset's filter pipeline as (filter id, client values), from its creation property list."""
    plist = ds.id.get_create_plist()
    return [plist.get_filter(i)[:3:2] for i in range(plist.get_nfilters())]


def _merge_virtual(dst: h5py.File, parts: list[Path], sizes: list[int], base: Path) -> None:
    total = sum(sizes)
    for key in list(ARRAYS) + list(META) + [PIXEL_DIGESTS]:
        with h5py.File(parts[0], "r") as f0:
            dtype, shape = f0[key].dtype, f0[key].shape[1:]
        layout = h5py.VirtualLayout(shape=(total, *shape), dtype=dtype)
        off = 0
        for p, n in zip(parts, sizes):
            if n:  # relative paths so the archive and its parts/ folder can move together
                layout[off:off + n] = h5py.VirtualSource(os.path.relpath(p, base), key, shape=(n, *shape))
            off += n
        ds = dst.create_virtual_dataset(key, layout, fillvalue=None)
        if key == PIXEL_DIGESTS:  # its columns, as in a copy (the arrays' attributes come from describe)
            with h5py.File(parts[0], "r") as f0:
                ds.attrs.update(f0[key].attrs)


def iter_records(path, indices=None):
    """The patches of an archive (or a part file), as records.

    Args:
        path: ``bigearth_sr.h5`` (or ``parts/<product>.h5``).
        indices: rows to read, in this order (default: every row, in archive order).

    Returns:
        An iterator of :class:`bigearth.record.PatchRecord`, one per row.
    """
    with h5py.File(path, "r") as f:
        n = f["name"].shape[0]
        for i in (range(n) if indices is None else indices):
            yield read_record(f, i)


def read_record(f: h5py.File, i: int) -> PatchRecord:
    """Row ``i`` of an open archive as a record."""
    return PatchRecord.from_fields({k: f[k][i] for k in META_FIELDS if k in f}, {k: f[k][i] for k in ARRAYS})


# a build that kept no patch writes no archive and no manifest.json (nothing for a reader to find);
# its manifest is kept under this name, the record of what failed or was screened, and why
FAILED_MANIFEST_NAME = "manifest.failed.json"


def no_such_archive(path) -> InputError:
    """The archive is not there; where the last build into its folder built nothing, say so."""
    record = Path(path).with_name(FAILED_MANIFEST_NAME)
    if record.exists():
        return InputError(path, f"no such archive: the last build into {record.parent} built nothing ({record} "
                                f"records why)")
    return InputError(path, "no such archive")


# --------------------------------------------------------------------------- reading, checked


@contextlib.contextmanager
def reading(path):
    """The archive opened for reading; one that is not a readable HDF5 archive of patches is an
    InputError naming it (and the datasets it lacks)."""
    if Path(path).is_dir():  # HDF5 would say "[Errno 21] Is a directory"
        raise InputError(path, f"is {what_is(path)}, not an archive: give the bigearth_sr.h5 a build wrote")
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise no_such_archive(path) from None
    except OSError as e:
        kind = what_is(path)
        if kind not in ("a file", "a file that cannot be read") and not kind.startswith("an HDF5"):  # a known other kind
            raise InputError(path, f"is {kind}, not an HDF5 archive: give the bigearth_sr.h5 a build wrote") from None
        raise InputError(path, f"not a readable HDF5 archive ({str(e).splitlines()[0][:200]})") from None
    with f:
        missing = [k for k in (*ARRAYS, *META) if k not in f and k not in META_DEFAULTS]
        if missing:
            raise InputError(path, f"not a bigearth-sr archive: no dataset {', '.join(missing)}")
        gone = _missing_sources(f, Path(path).parent)
        if gone:  # HDF5 would read the missing rows as fill values: empty names, zero pixels
            raise InputError(path, f"a virtual archive (--merge virtual) whose part file(s) are gone: {', '.join(gone[:3])}"
                                   f"{f' and {len(gone) - 3} more' if len(gone) > 3 else ''}; keep parts/ beside it, "
                                   f"or rebuild with --merge copy for a self-contained archive")
        yield f


def _missing_sources(f: h5py.File, base: Path) -> list[str]:
    """The source files of ``f``'s virtual datasets that are not there (relative to ``base``)."""
    files = set()
    for key in f:
        if f[key].is_virtual:
            files.update(s.file_name for s in f[key].virtual_sources())
    return sorted(n for n in files if n != "." and not (base / n).exists())


def read_dataset(f: h5py.File, key: str, sel, path):
    """``f[key][sel]``; a damaged chunk is an InputError naming the archive and the dataset."""
    try:
        return f[key][sel]
    except (OSError, ValueError, RuntimeError) as e:
        raise InputError(path, f"dataset {key!r} cannot be read (damaged archive? "
                               f"{str(e).splitlines()[0][:200]})") from None


# the manifest's fields that readers act on (shards take the statistics, everyone the counts):
# each digested in its "digests", so an edit is named by field
MANIFEST_FIELDS = ("patches", "patches_per_split", "band_stats", "band_stats_per_split", "dropped", "outputs",
                   "config", "tiles_failed")


def check_manifest(path, manifest_path=None) -> tuple[str, dict | None]:
    """(sha256, manifest) of an archive that agrees with the build manifest beside it (or
    ``manifest_path``): an archive the manifest does not list (left from an earlier build) or
    whose sha256 differs (changed since) is an InputError. Without a manifest: (sha256, None)."""
    path = Path(path)
    named = manifest_path is not None  # given by the user: a mismatch is the manifest's, not the archive's
    manifest_path = Path(manifest_path) if manifest_path is not None else path.with_name("manifest.json")
    if not path.exists():
        raise no_such_archive(path)
    sha = sha256_file(path)
    if not manifest_path.exists():
        return sha, None
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded = manifest.get("outputs", {}).get(path.name)
    except (ValueError, AttributeError) as e:
        raise InputError(manifest_path, f"not a readable build manifest ({e})") from None
    if named and recorded != sha:
        raise InputError(manifest_path, f"is the manifest of another build: it records "
                                        f"{'no ' + path.name if recorded is None else 'another ' + path.name} "
                                        f"(sha256 {str(recorded)[:16]}…), not {path} (sha256 {sha[:16]}…); "
                                        f"give that archive's own manifest, or none")
    if recorded is None:
        raise InputError(path, f"{manifest_path.name} does not list this archive (its build wrote "
                               f"{manifest.get('patches', 0)} patches): it is left from another build")
    if recorded != sha:
        raise InputError(path, f"sha256 differs from the one {manifest_path.name} records: the archive changed "
                               f"after its build (rebuild it)")
    check_field_digests(manifest, manifest_path, "build manifest")
    with reading(path) as f:  # the figures the manifest repeats are the archive's own, under its digests
        for field in ("band_stats", "patches_per_split"):
            own = f.attrs.get(field)
            if own is not None and field in manifest and json.loads(own) != manifest[field]:
                raise InputError(manifest_path, f"field {field!r} differs from the archive's own ({path.name}): the "
                                                f"manifest was changed after the build (rebuild, or remove it)")
    return sha, manifest


# --------------------------------------------------------------------------- checking itself


def meta_digest(f: h5py.File) -> str:
    """sha256 of the descriptive datasets' values (strings as UTF-8, numbers little-endian), in
    the record's order: what ``meta_sha256`` records. Their variable-length strings live in
    HDF5's global heap, which no HDF5 checksum covers."""
    h = hashlib.sha256()
    for key in META:
        if key not in f:
            continue
        ds = f[key]
        h.update(f"{key}\0{ds.shape}\0".encode())
        if h5py.check_string_dtype(ds.dtype) is not None:
            h.update("\0".join(ds.asstr()[:]).encode())
        else:
            h.update(np.ascontiguousarray(ds[:], ds.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


# root attributes the digests cannot cover: the digests themselves
_UNDIGESTED = ("meta_sha256", "digests")


def _attr_text(v) -> str:
    v = v.decode() if isinstance(v, bytes) else v
    return json.dumps(v.tolist() if hasattr(v, "tolist") else v, sort_keys=True, default=str)


def record_digests(f: h5py.File) -> dict:
    """What the root attribute ``digests`` records, so a change is named by what changed: the
    labels (``classes``, ``classes_19``: numbers a rewrite with h5py would give a fresh Fletcher-32),
    the pixels' per-row digests (``PIXEL_DIGESTS``) and each root attribute (build configuration, band statistics, counts, reading note...). The
    descriptive strings are ``meta_sha256``'s."""
    out = {}
    for key in (*LABEL_KEYS, PIXEL_DIGESTS):
        if key in f:
            out[f"dataset {key}"] = hashlib.sha256(np.ascontiguousarray(f[key][:]).tobytes()
                                                   + str(f[key].shape).encode()).hexdigest()
    for k in sorted(f.attrs):
        if k not in _UNDIGESTED:
            out[f"attribute {k}"] = hashlib.sha256(_attr_text(f.attrs[k]).encode()).hexdigest()
    return out


class UncheckedArchive(InputError):
    """An archive that carries no digests to check it against."""


def check_meta(f: h5py.File, path, allow_unchecked: bool = False) -> bool:
    """The archive against the digests it records: the descriptive datasets against
    ``meta_sha256``, the labels and every root attribute against ``digests``; an InputError naming
    the archive and what differs. An archive without ``meta_sha256`` is refused
    (``UncheckedArchive``: its values could have been changed unseen, its digests removed) unless
    ``allow_unchecked`` (an archive built before archives carried checksums, on purpose): then
    False. One built before ``digests`` existed is checked against ``meta_sha256`` alone. True
    when it holds."""
    recorded = f.attrs.get("meta_sha256")
    if recorded is None:
        if allow_unchecked:
            return False
        raise UncheckedArchive(path, "carries no checksum attributes (meta_sha256, digests): an archive built before "
                                     "archives carried them, or one whose digests were removed; rebuild it, or pass "
                                     "--unchecked-archive to use it as it is on purpose")
    try:
        got = meta_digest(f)
    except (OSError, ValueError, RuntimeError) as e:
        raise InputError(path, f"the descriptive datasets cannot be read (damaged archive? "
                               f"{str(e).splitlines()[0][:200]})") from None
    if got != recorded:
        raise InputError(path, "the descriptive datasets (names, splits, georeference) differ from the meta_sha256 "
                               "the archive records: it was damaged or changed after its build")
    digests = f.attrs.get("digests")
    if digests is not None:
        try:
            want = json.loads(digests)
        except ValueError:
            raise InputError(path, "its attribute 'digests' is not readable JSON: damaged or changed after its "
                                   "build") from None
        try:
            got = record_digests(f)
        except (OSError, ValueError, RuntimeError) as e:
            raise InputError(path, f"the labels cannot be read (damaged archive? {str(e).splitlines()[0][:200]})") from None
        for field in sorted(set(want) | set(got)):
            if want.get(field) != got.get(field):
                what = "is missing" if field not in got else "is new" if field not in want else "differs"
                raise InputError(path, f"{field} {what} from what the archive's digests record: it was changed after "
                                       f"its build (rebuild it)")
    return True


@dataclasses.dataclass(frozen=True)
class Checked:
    """What ``check`` found: the archive's sha256 (None when nothing needed it), the manifest beside
    it (None without one), and whether its values carry checksums."""
    sha256: str | None
    manifest: dict | None
    checksummed: bool


_CHECKED: dict = {}  # this process's checks, by the files' identity: a data module's three splits pay once


def _identity(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return (str(path), None)
    # ctime too: any write changes it, and no tool sets it back (mtime can be)
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def check(path, manifest_path=None, allow_unchecked: bool = False, need_sha: bool = False) -> Checked:
    """The one check every reader of an archive makes before it uses any value (``shards``, ``info``,
    the TFDS builder, the torchgeo dataset, ``show``), so that what one refuses every one refuses,
    in the same line: the archive against the manifest beside it (or ``manifest_path``) when there
    is one (its sha256, its own digests, the figures it repeats: ``check_manifest``, and its patch
    count), and the archive against its own digests (``check_meta``: names, splits, georeference,
    labels, the pixels' digests, every attribute; an archive without them refused unless
    ``allow_unchecked``). The pixels themselves are checked by each reader as it reads them
    (``check_pixels``). ``need_sha``: the sha256 even without a manifest (a reader that records it)."""
    path = Path(path)
    named = Path(manifest_path) if manifest_path is not None else path.with_name("manifest.json")
    key = (_identity(path), _identity(named), manifest_path is not None, allow_unchecked)
    done = _CHECKED.get(key)
    if done is not None and (done.sha256 is not None or not need_sha):  # a manifest beside it: the sha256 is known
        return done
    sha, manifest = None, None
    if need_sha or named.exists() or manifest_path is not None:
        sha, manifest = check_manifest(path, manifest_path)
    with reading(path) as f:
        checksummed = check_meta(f, path, allow_unchecked)
        rows = f["name"].shape[0]
    if manifest is not None and manifest.get("patches") != rows:
        raise InputError(named, f"field 'patches' says {manifest.get('patches')}, the archive ({path.name}) holds "
                                f"{rows}: the manifest was changed after the build (rebuild, or remove it)")
    _CHECKED[key] = Checked(sha, manifest, checksummed)
    return _CHECKED[key]


def _checksummed(f: h5py.File, ds: h5py.Dataset) -> bool:
    """Whether a dataset's values carry a checksum: Fletcher-32 on its chunks (a virtual dataset:
    on every source's), or for strings, which HDF5 cannot checksum, meta_sha256."""
    if h5py.check_string_dtype(ds.dtype) is not None:
        return f.attrs.get("meta_sha256") is not None
    if not ds.is_virtual:
        return any(fid == CHECKSUM_FILTER for fid, _ in filters(ds))
    base = Path(f.filename).parent
    for src in {(s.file_name, s.dset_name) for s in ds.virtual_sources()}:
        with h5py.File(base / src[0], "r") as part:
            if not any(fid == CHECKSUM_FILTER for fid, _ in filters(part[src[1]])):
                return False
    return True


def verify(path, progress=None, allow_unchecked: bool = False) -> dict:
    """Read every chunk of every dataset of an archive (HDF5 checks each chunk's Fletcher-32 as
    it reads) and its descriptive datasets against ``meta_sha256``. Returns ``{"patches",
    "checksummed" (every chunk and the descriptive values carry a checksum), "unchecked" (the
    datasets that do not), "problems" (one line each, naming the dataset and rows)}``; an
    archive that cannot be opened is an InputError. ``progress(rows)`` is called as rows are read."""
    problems, unchecked = [], []
    with reading(path) as f:
        n = f["name"].shape[0]
        digests = stored_pixel_digests(f)
        names = f["name"].asstr()[:] if digests is not None else None
        for key in (*ARRAYS, *META):
            if key not in f:
                continue
            ds = f[key]
            if not _checksummed(f, ds):
                unchecked.append(key)
            step = ds.chunks[0] if ds.chunks else 1024
            for lo in range(0, n, step):
                try:
                    block = ds[lo:lo + step]
                except (OSError, ValueError, RuntimeError) as e:
                    rows = f"row {lo}" if min(n, lo + step) - lo == 1 else f"rows {lo}-{min(n, lo + step) - 1}"
                    problems.append(f"dataset {key!r}, {rows}: cannot be read "
                                    f"({str(e).splitlines()[0][:160]})")
                else:
                    if digests is not None and key in ARRAY_KEYS:  # what an edit with h5py leaves unseen
                        for j, a in enumerate(block):
                            try:
                                check_pixels(path, names[lo + j], digests[lo + j], {key: a})
                            except InputError as e:
                                problems.append(e.problem)
                if progress is not None and key == "data_super":
                    progress(min(step, n - lo))
        if digests is None:
            unchecked.append(PIXEL_DIGESTS)
        if f.attrs.get("meta_sha256") is None:
            unchecked.append("meta_sha256")
        elif f.attrs.get("digests") is None:
            unchecked.append("digests")
        try:
            check_meta(f, path, allow_unchecked=allow_unchecked)
        except InputError as e:
            problems.append(e.problem)
    return {"patches": n, "checksummed": not unchecked, "unchecked": unchecked, "problems": problems}
