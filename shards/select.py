"""A selection of patches for ``bigearth-sr shards --select``: a text file of patch names, one a
line, or a parquet with a ``name`` column (a query of a build's ``patches.parquet`` saved by
geopandas, DuckDB or pandas), so that "the test patches in Portugal in July" become shards.

The selection is known by its content (the sorted names' sha256), whatever file held it: the
index records that digest, and the same names from a text file or a parquet give the same shards.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from bigearth.errors import InputError
from bigearth.files import check_regular, open_regular

# what a selection can be, checked before it is read: names of ~60 bytes, far more than any archive holds
MAX_BYTES = 1 << 30
MAX_ROWS = 50_000_000
PARQUET_MAGIC = b"PAR1"


def read_selection(path) -> list[str]:
    """The patch names ``path`` lists, in their order, each once. A text file: one name a line
    (blank lines and lines starting with ``#`` are skipped). A parquet (by its magic bytes): its
    ``name`` column."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file (--select: a file of patch names, one a line, or a parquet)")
    if path.is_dir():
        raise InputError(path, "is a folder; --select takes a file of patch names (one a line) or a parquet "
                               "with a name column")
    with open_regular(path) as fh:
        head = fh.read(4)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise InputError(path, f"is {size} bytes, more than a selection can be ({MAX_BYTES} bytes)")
    names = _parquet_names(path) if head == PARQUET_MAGIC else _text_names(path)
    if not names:
        raise InputError(path, "selects no patch (an empty selection would write empty shards)")
    return list(dict.fromkeys(names))


def _text_names(path: Path) -> list[str]:
    try:
        text = check_regular(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, f"is neither a parquet nor UTF-8 text of patch names ({e.reason} at byte "
                               f"{e.start})") from None
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def _parquet_names(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, f"is not a readable parquet ({str(e).splitlines()[0][:200]})") from None
    if "name" not in pf.schema_arrow.names:
        raise InputError(path, f"has no 'name' column (its columns: {', '.join(pf.schema_arrow.names[:12])})")
    if pf.metadata.num_rows > MAX_ROWS:
        raise InputError(path, f"has {pf.metadata.num_rows} rows, more than a selection can be ({MAX_ROWS})")
    col = pf.read(columns=["name"]).column("name")
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise InputError(path, f"column 'name' is {col.type}, not strings of patch names")
    if col.null_count:
        raise InputError(path, f"column 'name' has {col.null_count} empty value(s)")
    return [str(v) for v in col.to_pylist()]


def digest(names) -> str:
    """sha256 of the selection's sorted names, one a line: its identity in the index."""
    return hashlib.sha256("\n".join(sorted(set(names))).encode()).hexdigest()


def check_known(path, names: list[str], archive_names, archive_path) -> None:
    """Every selected name is a patch of the archive; otherwise an InputError naming a few."""
    known = set(archive_names)
    unknown = [n for n in names if n not in known]
    if unknown:
        hint = "; a catalogue's rows other than status 'kept' are not in the archive" \
            if Path(path).suffix == ".parquet" else ""
        raise InputError(path, f"{len(unknown)} of its {len(names)} names are not patches of {archive_path} "
                               f"(e.g. {', '.join(unknown[:3])}){hint}")
