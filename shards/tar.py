"""Tar members of one shard, read by seeking (local files: unwanted members are never read) or
streamed (pipes and URLs, through ``tarfile``)."""
from __future__ import annotations

import tarfile

import webdataset as wds


def local_path(url: str) -> str | None:
    if url.startswith("file://"):
        return url[7:]
    return None if url.startswith("pipe:") or "://" in url else url


class _Member:
    """The TarInfo fields the reader uses."""

    __slots__ = ("name", "size", "offset", "offset_data")

    def __init__(self, name: str, size: int, offset: int, offset_data: int):
        self.name, self.size, self.offset, self.offset_data = name, size, offset, offset_data


def _octal(field: bytes, what: str) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for values that do not fit in octal
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise tarfile.ReadError(f"invalid {what} field in a tar header") from None


def _plain_members(fh, state: dict):
    """Regular members of a seekable tar of plain ustar/GNU headers, parsed directly: 5-10x
    less work per header than ``tarfile.TarInfo``, which dominated the reader's time
    (benchmarks/loaders.py). Anything else (pax or GNU long-name headers, links) raises
    ``_NotPlain`` so the caller falls back to ``tarfile``."""
    pos = 0
    while True:
        fh.seek(pos)
        hdr = fh.read(512)
        state["offset"] = pos
        if not hdr or hdr == _ZERO_BLOCK:
            return  # end of archive (a cut at a member boundary is caught by the sample count)
        if len(hdr) < 512:
            raise tarfile.ReadError("unexpected end of data")
        if _octal(hdr[148:156], "checksum") != sum(hdr[:148]) + 256 + sum(hdr[156:]):
            raise tarfile.ReadError("bad checksum in a tar header")
        kind = hdr[156:157]
        size = _octal(hdr[124:136], "size")
        if kind not in (b"0", b"\0", b"5"):
            raise _NotPlain
        name = hdr[:100].split(b"\0", 1)[0].decode()
        if hdr[257:262] == b"ustar" and hdr[345:346] != b"\0":
            name = hdr[345:500].split(b"\0", 1)[0].decode() + "/" + name
        if kind != b"5":
            yield _Member(name, size, pos, pos + 512)
        pos += 512 + -(-size // 512) * 512


class _NotPlain(Exception):
    pass

_ZERO_BLOCK = bytes(512)


def tar_members(url: str, want, state: dict):
    """(member, bytes or None) for each regular member of one shard; ``state["offset"]``
    follows the header being read. Local files are read by seeking: a member nobody wants is
    not read at all, and a wanted one is read straight into its own writable buffer (no copy
    downstream). Pipes and URLs (webdataset's ``gopen``) are streamed through ``tarfile``."""
    path = local_path(url)
    if path is None:
        with wds.gopen(url, "rb") as fh:
            tf = tarfile.open(fileobj=fh, mode="r|")
            for info in tf:
                state["offset"] = info.offset
                tf.members = []  # tarfile would otherwise keep every TarInfo
                if not info.isreg():
                    continue
                if not want(info.name):
                    yield info, None
                    continue
                data = tf.extractfile(info).read()
                if len(data) != info.size:
                    raise tarfile.ReadError("unexpected end of data")
                yield info, data
            state["offset"] = tf.offset
        return
    with open(path, "rb") as fh:
        members = _plain_members(fh, state)
        done = 0
        while True:
            try:
                m = next(members)
            except StopIteration:
                return
            except _NotPlain:  # rare: headers tarfile knows and the fast path does not
                members = _tarfile_members(fh, done)
                continue
            done = m.offset_data + -(-m.size // 512) * 512
            if not want(m.name):
                yield m, None
                continue
            buf = bytearray(m.size)
            fh.seek(m.offset_data)
            if fh.readinto(buf) != m.size:
                raise tarfile.ReadError("unexpected end of data")
            yield m, buf


def _tarfile_members(fh, start: int):
    fh.seek(start)
    tf = tarfile.open(fileobj=fh, mode="r:")  # offsets it reports are positions in fh
    while (info := tf.next()) is not None:
        tf.members = []
        if info.isreg():
            yield _Member(info.name, info.size, info.offset, info.offset_data)


def member_key(name: str) -> tuple[str, str]:
    """(sample key, extension) of a member name, as webdataset splits them: the key ends at the
    first dot of the file name."""
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return name[:len(name) - len(base)] + key, ext
