"""CORINE Land Cover nomenclature as used by BigEarthNet (43 classes) and its 19-class version.

The 43 classes are CLC level-3 minus 335 (glaciers and perpetual snow), in CLC-code order;
that order is the column order of the ``classes`` multi-hot vectors everywhere in this project.
The 19-class nomenclature follows Sumbul et al. 2020 (BigEarthNet-19).
"""
from __future__ import annotations

import numpy as np

# (CLC code, BigEarthNet label name) in the fixed order of the ``classes`` vector.
CLC_43: tuple[tuple[int, str], ...] = (
    (111, "Continuous urban fabric"),
    (112, "Discontinuous urban fabric"),
    (121, "Industrial or commercial units"),
    (122, "Road and rail networks and associated land"),
    (123, "Port areas"),
    (124, "Airports"),
    (131, "Mineral extraction sites"),
    (132, "Dump sites"),
    (133, "Construction sites"),
    (141, "Green urban areas"),
    (142, "Sport and leisure facilities"),
    (211, "Non-irrigated arable land"),
    (212, "Permanently irrigated land"),
    (213, "Rice fields"),
    (221, "Vineyards"),
    (222, "Fruit trees and berry plantations"),
    (223, "Olive groves"),
    (231, "Pastures"),
    (241, "Annual crops associated with permanent crops"),
    (242, "Complex cultivation patterns"),
    (243, "Land principally occupied by agriculture, with significant areas of natural vegetation"),
    (244, "Agro-forestry areas"),
    (311, "Broad-leaved forest"),
    (312, "Coniferous forest"),
    (313, "Mixed forest"),
    (321, "Natural grassland"),
    (322, "Moors and heathland"),
    (323, "Sclerophyllous vegetation"),
    (324, "Transitional woodland/shrub"),
    (331, "Beaches, dunes, sands"),
    (332, "Bare rock"),
    (333, "Sparsely vegetated areas"),
    (334, "Burnt areas"),
    (411, "Inland marshes"),
    (412, "Peatbogs"),
    (421, "Salt marshes"),
    (422, "Salines"),
    (423, "Intertidal flats"),
    (511, "Water courses"),
    (512, "Water bodies"),
    (521, "Coastal lagoons"),
    (522, "Estuaries"),
    (523, "Sea and ocean"),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for _, name in CLC_43)
CLC_CODES: tuple[int, ...] = tuple(code for code, _ in CLC_43)
NUM_CLASSES = len(CLASS_NAMES)

# BigEarthNet-19: each new class and the CLC codes it merges. Codes 122-142, 332, 334 and 423
# have no 19-class target (the paper's "patches_with_no_19_class_targets").
CLASSES_19: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Urban fabric", (111, 112)),
    ("Industrial or commercial units", (121,)),
    ("Arable land", (211, 212, 213)),
    ("Permanent crops", (221, 222, 223, 241)),
    ("Pastures", (231,)),
    ("Complex cultivation patterns", (242,)),
    ("Land principally occupied by agriculture, with significant areas of natural vegetation", (243,)),
    ("Agro-forestry areas", (244,)),
    ("Broad-leaved forest", (311,)),
    ("Coniferous forest", (312,)),
    ("Mixed forest", (313,)),
    ("Natural grassland and sparsely vegetated areas", (321, 333)),
    ("Moors, heathland and sclerophyllous vegetation", (322, 323)),
    ("Transitional woodland, shrub", (324,)),
    ("Beaches, dunes, sands", (331,)),
    ("Inland wetlands", (411, 412)),
    ("Coastal wetlands", (421, 422)),
    ("Inland waters", (511, 512)),
    ("Marine waters", (521, 522, 523)),
)
CLASS_NAMES_19: tuple[str, ...] = tuple(name for name, _ in CLASSES_19)
NUM_CLASSES_19 = len(CLASS_NAMES_19)

# The 44 CLC level-3 classes in order; the official CLC raster stores their 1-based position
# ("GRID_CODE") instead of the code. 48 and 128 are the raster's no-data values.
CLC_44_CODES: tuple[int, ...] = CLC_CODES[:33] + (335,) + CLC_CODES[33:]
CLC_CODES_WITHOUT_CLASS = frozenset({335, 990, 995, 999})  # glaciers, unclassified, no data
CLC_GRID_NODATA = frozenset({0, 48, 128, 255})

_INDEX_BY_NAME = {name: i for i, name in enumerate(CLASS_NAMES)}
_INDEX_BY_CODE = {code: i for i, code in enumerate(CLC_CODES)}
# 43 -> 19 as a matrix so that a batch of multi-hot vectors converts with one product.
TO_19 = np.zeros((NUM_CLASSES, NUM_CLASSES_19), dtype=np.uint8)
for _j, (_, _codes) in enumerate(CLASSES_19):
    for _c in _codes:
        TO_19[_INDEX_BY_CODE[_c], _j] = 1


class UnknownClassError(ValueError):
    """A label name or CLC code that is not part of the nomenclature."""


def index_of_name(name: str, source: str = "") -> int:
    try:
        return _INDEX_BY_NAME[name]
    except KeyError:
        where = f" in {source}" if source else ""
        raise UnknownClassError(f"unknown BigEarthNet class name {name!r}{where}") from None


def multi_hot_from_names(names, source: str = "") -> np.ndarray:
    vec = np.zeros(NUM_CLASSES, dtype=np.uint8)
    for name in names:
        vec[index_of_name(name, source)] = 1
    return vec


def multi_hot_from_codes(codes, source: str = "") -> np.ndarray:
    """Multi-hot over the 43 classes from CLC codes; codes without a class (335, 99x) are ignored."""
    vec = np.zeros(NUM_CLASSES, dtype=np.uint8)
    for code in codes:
        code = int(code)
        if code in CLC_CODES_WITHOUT_CLASS:
            continue
        try:
            vec[_INDEX_BY_CODE[code]] = 1
        except KeyError:
            where = f" in {source}" if source else ""
            raise UnknownClassError(f"unknown CORINE code {code}{where}") from None
    return vec


def to_19(classes: np.ndarray) -> np.ndarray:
    """43-class multi-hot vector(s) -> 19-class multi-hot vector(s)."""
    return (np.asarray(classes, dtype=np.uint8) @ TO_19 > 0).astype(np.uint8)


def names_of(classes: np.ndarray, names: tuple[str, ...] = CLASS_NAMES) -> list[str]:
    return [names[i] for i in np.flatnonzero(classes)]


def grid_code_to_clc(grid: np.ndarray) -> np.ndarray:
    """Official CLC raster values (1..44) to CLC codes; no-data becomes 999."""
    lut = np.full(256, 999, dtype=np.int32)
    lut[1:45] = CLC_44_CODES
    return lut[np.asarray(grid, dtype=np.uint8)]
