"""The patch record: the one data model that flows from the builder to the shards and the trainer."""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from .nomenclature import NUM_CLASSES, NUM_CLASSES_19

PATCH_PX = 120  # patch side at 10 m
PATCH_M = 1200  # patch side in metres

BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
BANDS_60M = ("B01", "B09")
# data_super band order: spectral order, as BigEarthNet and DSen2 list them.
BANDS_SUPER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
BANDS_SR = tuple(b for b in BANDS_SUPER if b not in BANDS_10M)  # the bands super-resolution makes: B01 B05 B06 B07 B8A B09 B11 B12
RGB = ("B04", "B03", "B02")
RGB_INDEX = [BANDS_SUPER.index(b) for b in RGB]  # RGB rows of data_super
BAND_RESOLUTION = {**{b: 10 for b in BANDS_10M}, **{b: 20 for b in BANDS_20M}, **{b: 60 for b in BANDS_60M}}

# name -> (shape, dtype) of the array fields of a record; the HDF5 keys are these names.
ARRAYS: dict[str, tuple[tuple[int, ...], str]] = {
    "data_super": ((len(BANDS_SUPER), PATCH_PX, PATCH_PX), "uint16"),
    "data_10m": ((len(BANDS_10M), PATCH_PX, PATCH_PX), "uint16"),
    "data_20m": ((len(BANDS_20M), PATCH_PX // 2, PATCH_PX // 2), "uint16"),
    "data_60m": ((len(BANDS_60M), PATCH_PX // 6, PATCH_PX // 6), "uint16"),
    "classes": ((NUM_CLASSES,), "uint8"),
    "classes_19": ((NUM_CLASSES_19,), "uint8"),
}
# name -> (kind, shape) of the descriptive fields of a record: "str", or a numpy dtype name. The
# archive's datasets, the shards' meta.json and the TFDS metadata are derived from this table, so
# a field is added here (and to PatchRecord) and nowhere else.
META_FIELDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "name": ("str", ()), "product": ("str", ()), "tile": ("str", ()), "date": ("str", ()), "x": ("int16", ()),
    "y": ("int16", ()), "crs": ("str", ()), "bounds": ("float64", (4,)), "split": ("str", ()),
    "v1_name": ("str", ()), "s1_name": ("str", ()),
}
# fields added after the first archives: read as these defaults from files written before them
META_DEFAULTS = {"v1_name": "", "s1_name": ""}
SPLITS = ("train", "validation", "test", "none")
# what users of other BigEarthNet loaders call a split (torchgeo and ConfigILM: "val"), and ours
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "eval": "validation"}


def canonical_split(name: str, note=None) -> str:
    """``name`` as this package spells it: ``val`` -> ``validation`` (``note(text)`` is told so).
    Names that are no split stay as they are, for the caller to refuse with its own context."""
    if name in SPLIT_ALIASES:
        if note is not None:
            note(f"note: split {name!r} is called {SPLIT_ALIASES[name]!r} here; reading {SPLIT_ALIASES[name]!r}")
        return SPLIT_ALIASES[name]
    return name

# What the uint16 values mean, written into every output.
VALUE_CONVENTION = (
    "surface reflectance x 10000 (BOA_QUANTIFICATION_VALUE); the BOA_ADD_OFFSET of processing "
    "baselines >= 04.00 is removed and negative results clipped to 0, so products of every "
    "baseline and the BigEarthNet v1 archive share one convention"
)


@dataclasses.dataclass(eq=False)
class PatchRecord:
    """One 1.2 km x 1.2 km patch of one product, with everything that describes it."""

    name: str  # <mission>_MSIL2A_<datetime>_<x>_<y>
    product: str  # source product (SAFE name or BigEarthNet tile_source)
    tile: str  # MGRS tile id, e.g. T33UUP
    date: str  # acquisition, ISO 8601
    x: int
    y: int
    crs: str  # e.g. EPSG:32633
    bounds: tuple[float, float, float, float]  # ulx, uly, lrx, lry
    split: str
    data_super: np.ndarray
    data_10m: np.ndarray
    data_20m: np.ndarray
    data_60m: np.ndarray
    classes: np.ndarray
    classes_19: np.ndarray
    # other names of the patch: its BigEarthNet v1 name (v1 and v2 inputs) and its Sentinel-1
    # partner (v2 inputs); "" when the input has none
    v1_name: str = ""
    s1_name: str = ""

    def __post_init__(self):
        for key, (shape, dtype) in ARRAYS.items():
            arr = getattr(self, key)
            if arr.shape != shape or arr.dtype != np.dtype(dtype):
                raise ValueError(f"{self.name}: {key} must be {dtype}{shape}, got {arr.dtype}{arr.shape}")
        if self.split not in SPLITS:
            raise ValueError(f"{self.name}: split must be one of {SPLITS}, got {self.split!r}")

    def __eq__(self, other) -> bool:
        """Field by field, arrays by value (the generated ``__eq__`` would compare arrays with
        ``==`` and fail on their truth value)."""
        if not isinstance(other, PatchRecord):
            return NotImplemented
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) if f.name in ARRAYS
                   else getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self))

    __hash__ = None  # mutable, compared by value

    def meta(self) -> dict[str, Any]:
        """The non-array fields (``META_FIELDS``), JSON-serialisable."""
        return {k: plain(k, getattr(self, k)) for k in META_FIELDS}

    @classmethod
    def from_fields(cls, meta: dict, arrays: dict) -> PatchRecord:
        """A record from its descriptive fields (any container of ``META_FIELDS``, values as
        stored: bytes, numpy scalars) and its arrays (``ARRAYS``)."""
        fields = {k: plain(k, meta[k]) if k in meta or k not in META_DEFAULTS else META_DEFAULTS[k]
                  for k in META_FIELDS}
        fields["bounds"] = tuple(fields["bounds"])
        return cls(**fields, **{k: arrays[k] for k in ARRAYS})


def plain(key: str, value) -> Any:
    """A stored value of a descriptive field as a plain Python value of its kind."""
    kind, shape = META_FIELDS[key]
    if kind == "str":
        return value.decode() if isinstance(value, bytes) else str(value)
    if shape:
        return [float(v) if kind.startswith("float") else int(v) for v in value]
    return float(value) if kind.startswith("float") else int(value)


def patch_name(product_prefix: str, x: int, y: int) -> str:
    """BigEarthNet v1 patch name: ``<mission>_MSIL2A_<datetime>_<x>_<y>``."""
    return f"{product_prefix}_{x}_{y}"


@dataclasses.dataclass(eq=False)
class RecordBatch:
    """Records as columns, the form the writers produce and the archive stores: ``arrays[key]``
    of shape (n, ...) per ``ARRAYS`` key, one ``META_FIELDS`` dict per record. Checked against
    the record's definition when made: the write side of the one patch record."""

    arrays: dict[str, np.ndarray]
    meta: list[dict]

    def __post_init__(self):
        n = len(self.meta)
        for key, (shape, dtype) in ARRAYS.items():
            a = self.arrays.get(key)
            if a is None or a.shape != (n, *shape) or a.dtype != np.dtype(dtype):
                got = "missing" if a is None else f"{a.dtype}{a.shape}"
                raise ValueError(f"{key}: a batch of {n} records needs {dtype}{(n, *shape)}, got {got}")
        if set(self.arrays) != set(ARRAYS):
            raise ValueError(f"arrays {sorted(set(self.arrays) - set(ARRAYS))} are not fields of the record")
        for m in self.meta:
            if set(m) != set(META_FIELDS):
                raise ValueError(f"{m.get('name')}: fields {sorted(m)} are not the record's {sorted(META_FIELDS)}")
            if m["split"] not in SPLITS:
                raise ValueError(f"{m['name']}: split must be one of {SPLITS}, got {m['split']!r}")

    def __len__(self) -> int:
        return len(self.meta)

    def __iter__(self) -> Iterator[PatchRecord]:
        for i, m in enumerate(self.meta):
            yield PatchRecord.from_fields(m, {k: self.arrays[k][i] for k in ARRAYS})

    @classmethod
    def of(cls, records: list[PatchRecord]) -> RecordBatch:
        """The batch of these records (in order)."""
        arrays = {k: np.stack([getattr(r, k) for r in records]) if records
                  else np.zeros((0, *shape), dtype) for k, (shape, dtype) in ARRAYS.items()}
        return cls(arrays, [r.meta() for r in records])
