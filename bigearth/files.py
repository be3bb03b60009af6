"""Files, one helper per mechanism: atomic writes (``atomic_path``, ``write_text``), content
digests (``sha256_file``, ``content_digest``, ``read_digested``), resume markers (``mark_done``, ``done_record``),
output folders made and shown writable (``output_folder``), output-folder locks (``folder_lock``), a full disk
named (``is_disk_full``, ``disk_full_error``), and files from elsewhere read as data
(``read_json``, ``load_torch``)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path


def sha256_file(path) -> str:
    """sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def special_kind(path) -> str | None:
    """"a FIFO", "a socket", a device... for a path that is neither a regular file nor a folder;
    None for those, and for nothing there (stat only: nothing is opened, nothing can block)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path):
    """``open(path, "rb")`` for a regular file; anything else (a FIFO, a socket, a device, a
    folder) is an InputError naming it, at once: a FIFO would block a reader forever. Opened
    without blocking, so the check itself cannot wait."""
    from .errors import InputError
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except IsADirectoryError:
        raise InputError(path, "is a folder, where a file is expected") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise InputError(path, f"is {kind}, not a regular file: not read")
    return os.fdopen(fd, "rb")


def check_regular(path) -> Path:
    """``path``, after checking without blocking that it is a regular file (``open_regular``):
    for readers that open files themselves (GDAL, tifffile, h5py)."""
    open_regular(path).close()
    return Path(path)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (a file, or a folder the caller creates there); on
    success it is renamed onto ``path``, on any error removed, so readers see the old file or the
    whole new one, never a part. The one way this package writes a file."""
    path = Path(path)
    tmp = path.with_name(temporary_name(path.name))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def temporary_name(name: str, pid: int | None = None) -> str:
    """The name of this process's temporary for ``name``: ``.<name>.<pid>@<host>.tmp``, so that a
    later run can tell a dead run's temporary (this host, no such process) from a live one's."""
    import socket
    return f".{name}.{os.getpid() if pid is None else pid}@{socket.gethostname()}.tmp"


# a temporary of ``temporary_name`` (or of the pid-only form written before hosts were named)
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)(?:@(?P<host>[^/]+))?\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clear_dead_temporaries(folder, depth: int = 2, say: bool = True) -> list[Path]:
    """Remove the temporaries that runs which died (SIGKILL, a lost node, a power cut) left in
    ``folder`` and its sub-folders down to ``depth``: those named by :func:`temporary_name` for
    this host whose process no longer exists. Never a live run's, and never another host's (its
    processes cannot be seen from here: said, not removed). Returns what was removed."""
    import socket
    host = socket.gethostname()
    removed, elsewhere = [], []
    level = [Path(folder)]
    for _ in range(depth + 1):
        below = []
        for d in level:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                m = _TEMPORARY.match(e.name)
                if m is None:
                    if e.is_dir(follow_symlinks=False):
                        below.append(Path(e.path))
                    continue
                if (m["host"] or host) != host:
                    elsewhere.append(e.path)
                    continue
                if int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
                    continue
                with contextlib.suppress(OSError):
                    if e.is_dir(follow_symlinks=False):
                        shutil.rmtree(e.path)
                    else:
                        os.unlink(e.path)
                    removed.append(Path(e.path))
        level = below
    if removed and say:
        import sys
        print(f"note: {folder}: removed {len(removed)} temporar{'y' if len(removed) == 1 else 'ies'} of run(s) that "
              f"died (e.g. {removed[0].name})", file=sys.stderr, flush=True)
    if elsewhere and say:
        import sys
        print(f"note: {folder}: {len(elsewhere)} temporar{'y' if len(elsewhere) == 1 else 'ies'} of another host's "
              f"run(s) kept, as their processes cannot be seen from here (e.g. {Path(elsewhere[0]).name}); remove "
              f"them once no run of that host writes here", file=sys.stderr, flush=True)
    return removed


def write_text(path, text: str) -> Path:
    """Write a text file atomically (``atomic_path``); returns the path."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def mark_done(marker, output, fingerprint: str, record: dict, sha256: str | None = None) -> dict:
    """Record that ``output`` is finished: its sha256 and size, the ``fingerprint`` of every input
    that shaped it, and the caller's ``record`` (returned by ``done_record`` on a rerun). Written
    atomically after ``output`` itself, so a marker never describes a file that is not there. The
    one resume marker of this package (build parts, shards)."""
    output = Path(output)
    doc = {"fingerprint": fingerprint, "sha256": sha256 or sha256_file(output),
           "bytes": output.stat().st_size, "record": record}
    write_text(marker, json.dumps(doc, indent=1))
    return record


def done_record(marker, output, fingerprint: str) -> dict | None:
    """The record of an earlier ``mark_done``, if its output is intact (size and sha256 as recorded)
    and was made from inputs with the same ``fingerprint``; otherwise None: the work is redone. An
    unreadable or foreign marker is no marker."""
    output = Path(output)
    try:
        doc = json.loads(Path(marker).read_text())
        if (not isinstance(doc, dict) or doc.get("fingerprint") != fingerprint or not output.is_file()
                or output.stat().st_size != doc.get("bytes") or sha256_file(output) != doc.get("sha256")
                or not isinstance(doc.get("record"), dict)):
            return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return doc["record"]


# What a JSON file this package reads can be at most, checked before it is parsed: Python's
# parser recurses once per nesting level (100,000 levels end in RecursionError, not a message),
# and every file it reads (manifests, indexes, label JSONs) is a few levels deep and far smaller
JSON_MAX_BYTES = 256 << 20
JSON_MAX_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, brackets inside strings aside; a
    linear scan in NumPy (microseconds for a label JSON), so no parser is asked to recurse."""
    import numpy as np

    b = np.frombuffer(_JSON_STRING.sub(b'""', data), np.uint8)
    step = np.isin(b, (0x5B, 0x7B)).astype(np.int64) - np.isin(b, (0x5D, 0x7D))
    return int(np.cumsum(step).max(initial=0))


# what a file is, by its first bytes: for the line that says what was given where another was wanted
_MAGIC = ((0, b"\x89HDF\r\n\x1a\n", "an HDF5 file (an archive?)"), (257, b"ustar", "a tar file (a shard?)"),
          (0, b"PAR1", "a parquet file"), (0, b"PK\x03\x04", "a zip file"), (0, b"{", "a JSON file"))


def what_is(path) -> str:
    """A few words saying what ``path`` is: nothing, a build's folder, a shards folder, a folder,
    or a file by its first bytes (HDF5, tar, parquet, zip, JSON)."""
    path = Path(path)
    if not path.exists():
        return "nothing (no such file or folder)"
    if kind := special_kind(path):
        return kind
    if path.is_dir():
        if (path / "index.json").is_file():
            return "a shards folder (it holds index.json)"
        if (path / "bigearth_sr.h5").is_file():
            return f"a build's folder (it holds {path / 'bigearth_sr.h5'})"
        return "a folder"
    try:
        with open_regular(path) as fh:
            head = fh.read(262)
    except (OSError, ValueError):
        return "a file that cannot be read"
    return next((words for at, magic, words in _MAGIC if head[at:at + len(magic)] == magic), "a file")


def read_json(path, what: str, missing=None, invalid=None, hint: str = "", max_bytes: int = JSON_MAX_BYTES,
              max_depth: int = JSON_MAX_DEPTH) -> dict:
    """A JSON object file, read as data; errors name the file: ``missing(path, problem)`` when
    there is none, ``invalid(path, problem)`` when it is not JSON, not an object or over the
    bounds (``max_bytes`` checked before reading, ``max_depth`` before parsing; both InputError
    unless given: the callers' own subclasses); ``hint`` follows the first message."""
    from .errors import InputError

    missing, invalid = missing or InputError, invalid or InputError
    path = Path(path)
    try:
        data = read_digested(path, max_bytes, what)
        depth = json_depth(data)
        if depth > max_depth:
            raise invalid(path, f"{what} is nested {depth} levels deep, more than the {max_depth} such a file can be: "
                                f"not parsed")
        doc = json.loads(data)
    except FileNotFoundError:
        raise missing(path, f"{what} is missing{hint}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise invalid(path, f"malformed {what} ({e})") from None
    if not isinstance(doc, dict):
        raise invalid(path, f"{what} is not a JSON object")
    return doc


def load_torch(path, what: str = "checkpoint"):
    """A torch file someone else may have written, read as data: tensors and plain containers
    only (``weights_only=True``); a file that carries code or is damaged is an InputError naming
    it, never executed."""
    import pickle

    import torch

    from .errors import InputError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(path, f"{what} does not exist") from None
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln or "global" in ln), None)
        if why is not None:
            raise InputError(path, f"refused: the {what} holds more than tensors and plain values, and loading it "
                                   f"could run code ({why[:200]})") from None
        raise InputError(path, f"not a readable {what} (damaged, or not a torch file)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise InputError(path, f"not a readable {what} (damaged or truncated? {type(e).__name__}: {first})") from None


# (device, inode, size, mtime, ctime) -> sha256 of the files worth remembering (the large ones:
# label sources, parquet tables, products): hashed once per process, and again whenever any of
# these change (a rewrite changes mtime and ctime even at the same size)
_DIGESTS: dict = {}
CACHE_MIN_BYTES = 1 << 20
_RECORDS: list[dict] = []  # the active recording_reads() logs, innermost last


def _stat_key(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def content_digest(path, read: dict | None = None) -> str:
    """sha256 of a file's content, or of a folder's files (relative names and contents): what
    decides whether work derived from ``path`` may be reused. Names and dates do not count.
    ``read`` (from ``recording_reads``) gives the digests of files as they were read: the bytes
    the work used, even if the file changed since."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for rel, full, st in _walk_files(str(path)):
            h.update((f"{rel}\0{st.st_size}\0{_file_digest(full, st, read)}\n" if st is not None
                      else f"{rel}\0unreadable\n").encode())
        return h.hexdigest()
    return _file_digest(str(path), path.stat(), read)


def file_digests(path) -> set[str]:
    """sha256 of every file in ``path`` (or of the file), names left out: two inputs that share a
    file's bytes share a digest here whatever either is called."""
    path = Path(path)
    if path.is_dir():
        return {_file_digest(full, st, None) for _, full, st in _walk_files(str(path)) if st is not None}
    return {_file_digest(str(path), path.stat(), None)}


def _file_digest(path: str, st: os.stat_result, read: dict | None) -> str:
    if read and (st.st_dev, st.st_ino) in read:
        return read[st.st_dev, st.st_ino]
    if st.st_size < CACHE_MIN_BYTES:  # a patch's files: read once per build, not worth keeping
        return sha256_file(path)
    key = _stat_key(st)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def _walk_files(root: str, prefix: str = "") -> list[tuple[str, str, os.stat_result]]:
    """(relative posix name, path, stat) of every file under ``root``, sorted by relative name
    (os.scandir: the pathlib walk cost more than hashing the patch folders' small files)."""
    out = []
    with os.scandir(root) as it:
        for e in it:
            rel = f"{prefix}{e.name}"
            try:
                if e.is_dir():
                    out += _walk_files(e.path, rel + "/")
                elif e.is_file():
                    out.append((rel, e.path, e.stat()))
            except OSError:  # a link that loops or leads nowhere readable: listed, its content none
                out.append((rel, e.path, None))
    return sorted(out, key=lambda t: t[0])


@contextlib.contextmanager
def recording_reads(digest_now=()):
    """Within this block ``read_digested`` records the sha256 of every file it reads, in the
    yielded dict ({(device, inode): sha256}), for ``content_digest(..., read=)``: work that
    digests its inputs after reading them reads each once, and the digest is of the very bytes
    it used. ``digest_now``: files the work reads by other means (or read earlier and kept),
    digested as they are on entering, so that they too are described as the work found them."""
    log: dict = {}
    for path in digest_now:
        st = Path(path).stat()
        log[st.st_dev, st.st_ino] = _file_digest(str(path), st, None)
    _RECORDS.append(log)
    try:
        yield log
    finally:
        _RECORDS.remove(log)


def read_digested(path, max_bytes: int | None = None, what: str = "file") -> bytes:
    """A file's bytes, digested on the way when ``recording_reads`` is active. A file that
    changes while it is read is an error naming it (what was read is no one version of it).
    ``max_bytes``: a larger file is an InputError naming the bound, before anything is read."""
    from .errors import InputError

    with open_regular(path) as fh:
        before = os.fstat(fh.fileno())
        if max_bytes is not None and before.st_size > max_bytes:
            raise InputError(path, f"{what} is {before.st_size:,} bytes, more than the {max_bytes:,} such a file "
                                   f"can be: not read")
        data = fh.read()
        after = os.fstat(fh.fileno())
    if _stat_key(before) != _stat_key(after):
        raise InputError(path, "the file changed while it was being read")
    if _RECORDS:
        _RECORDS[-1][after.st_dev, after.st_ino] = hashlib.sha256(data).hexdigest()
    return data


DISK_FULL_ERRNOS = (28, 27, 122)  # ENOSPC, EFBIG, EDQUOT (Linux numbers; HDF5 reports them in text)


def is_disk_full(e: BaseException | None) -> bool:
    """Whether ``e`` (or an error it was raised while handling) says the disk, the quota or the
    file-size limit ran out; HDF5's errors carry the errno only in their text, and h5py raises
    RuntimeError when closing a file whose write failed."""
    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(e, (OSError, RuntimeError)) and any(
                s in str(e) for s in ("No space left", "Disk quota exceeded", "File too large",
                                      "errno = 28", "errno = 27", "errno = 122",
                                      # torch.save's zip writer drops the errno: its stream fails,
                                      # then the archive's end no longer matches what it wrote
                                      "basic_ios::clear: iostream error")):
            return True
        e, seen = e.__context__, seen + 1
    return False


def size_text(n: int) -> str:
    """Bytes in the unit that shows them: MiB below 1 GB (20 MiB free is not "0.0 GB"), else GB."""
    return f"{n / 2 ** 20:.1f} MiB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def free_bytes(path) -> int | None:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def disk_full_error(path, e: BaseException, needed: int | None = None):
    """The EnvironmentFailure to raise for ``e`` while writing ``path``."""
    from .errors import EnvironmentFailure

    free = free_bytes(path)
    root = e
    while root.__context__ is not None and not isinstance(root, OSError):
        root = root.__context__  # h5py's RuntimeError at close hides the OSError of the write
    parts = [f"{path}: out of disk space while writing ({type(root).__name__}: {str(root).splitlines()[0][:160]})"]
    if needed is not None:
        parts.append(f"about {needed / 2**20:.1f} MiB were needed")
    if free is not None:
        parts.append(f"{free / 2**20:.1f} MiB are free there")
    import resource
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        parts.append(f"this process may write files of at most {limit / 2**20:.1f} MiB (ulimit -f)")
    parts.append("the partial file was removed; free space and run again: finished work is reused")
    return EnvironmentFailure("; ".join(parts))


@contextlib.contextmanager
def disk_full_named(path, needed=None):
    """Writes inside this block that run out of disk (``is_disk_full``) end as the named
    ``disk_full_error`` for ``path``; ``needed()`` (called only then) gives the bytes needed."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if is_disk_full(e):
            raise disk_full_error(path, e, needed() if needed else None) from None
        raise


def output_folder(folder) -> Path:
    """``folder`` created (with its parents) and shown writable before any work is done for it:
    a path that names a file, a read-only or full file system, a folder without permission end
    the run at once as one EnvironmentFailure naming the folder, instead of an OSError after
    the work. The one way a command makes its output folder."""
    import errno
    import tempfile

    from .errors import EnvironmentFailure

    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise EnvironmentFailure(f"{folder}: cannot write the output folder ({blocker} is a file, not a folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as e:
        why = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.ENOSPC: "no space left on the device"}.get(e.errno)
        raise EnvironmentFailure(f"{folder}: cannot write the output folder ({why or e.strerror or e})") from None
    return folder


@contextlib.contextmanager
def folder_lock(folder, wait: bool = False, what: str = "run"):
    """Hold ``folder/.lock`` (an flock) while writing into ``folder``: a second run into the same
    folder ends at once naming the holder (or, with ``wait``, waits for it). The lock goes with
    the process, so a killed run never leaves the folder locked; the temporaries of runs that died
    are removed when the lock is taken (``clear_dead_temporaries``); a run that ends removes the file
    (while still holding it: a run that was waiting on the removed file sees that it is gone and
    takes the lock afresh, so two runs never both hold the folder)."""
    import fcntl
    import socket
    import sys
    import time

    from .errors import EnvironmentFailure

    folder = output_folder(folder)
    path = folder / ".lock"
    while True:
        try:
            fh = open(path, "a+")
        except OSError as e:
            raise EnvironmentFailure(f"{folder}: cannot write the output folder ({e.strerror or e})") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise EnvironmentFailure(f"{folder}: another {what} is writing here ({holder}); wait for it to end, "
                                     f"pass --wait to queue behind it, or choose another output folder") from None
        try:
            if os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino:
                break  # the file we hold is the one in the folder
        except FileNotFoundError:
            pass
        fh.close()  # its holder removed it as it ended: try the one in the folder now
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv)[:300]}))
        fh.flush()
        clear_dead_temporaries(folder)  # what runs killed before this one left (never a live run's)
        yield
    finally:
        clear_dead_temporaries(folder, say=False)  # this run's worker processes it ended
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()  # releases the lock


def field_digests(doc: dict, fields) -> dict:
    """{field: sha256 of its canonical JSON} for those of ``fields`` that ``doc`` has: what a JSON
    document (a manifest, a shard index) records of itself, so that an edit is named by field."""
    return {k: hashlib.sha256(json.dumps(doc[k], sort_keys=True).encode()).hexdigest() for k in fields if k in doc}


def check_field_digests(doc: dict, path, what: str) -> bool:
    """``doc`` against the ``digests`` it records (``field_digests``): an InputError naming the
    file and the first field that differs. False when it records none."""
    from .errors import InputError
    want = doc.get("digests")
    if want is None:
        return False
    if not isinstance(want, dict):
        raise InputError(path, f"its 'digests' is not a table of field digests: the {what} was changed after it was written")
    got = field_digests(doc, want)
    for field in sorted(want):
        if got.get(field) != want[field]:
            why = "is missing" if field not in doc else "differs from its digest"
            raise InputError(path, f"field {field!r} {why}: the {what} was changed after it was written "
                                   f"(write it again: its command resumes and rewrites it)")
    return True
