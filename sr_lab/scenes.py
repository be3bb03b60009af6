"""What super-resolution is trained and judged on: scenes, each made of pieces of imagery.

A *scene* is one acquisition: the mission and the sensing date (``S2A_20170613``). Copies of
one acquisition count as one scene whatever their form (an L1C and an L2A product, a v1 and a
v2 patch, a mosaic of adjacent patches), because a network that trained on any of them has
seen that scene's surface, light and atmosphere. Keying on the date rather than the datatake's
time is deliberately coarse: it can only merge scenes, never split one. Synthetic products
are scenes of their own (``synthetic:<tile>_<date>``, plus ``_s<seed>`` where the product
records its generator's seed): their pixels come from the generator, not from the acquisition
they are named after, and another seed draws another scene.

A *piece* is one image of a scene with all three resolutions: a MAT/HDF5 crop (``im10``,
``im20``, ``im60``), a BigEarthNet v1 patch folder, or a Level-2A product. Pieces come with
the land cover of each 120 x 120 patch in them (:func:`patch_cover`): from the CORINE labels
where a patch has them, else from the spectra of its 10 m bands.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from bigearth.errors import InputError
from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M, PATCH_PX

from .crop import read_mat

_NAME = re.compile(r"(?P<mission>S2[ABCD])_MSI(?P<level>L1C|L2A)_(?P<date>\d{8})(?:T\d{6})?(?:_.*?(?P<tile>T\d{2}[A-Z]{3}))?")

# CORINE level-3 names (BigEarthNet's 43 classes) grouped into the covers quality is split by
COVER_OF_LABEL = {
    "water": ("Water courses", "Water bodies", "Coastal lagoons", "Estuaries", "Sea and ocean"),
    "forest": ("Broad-leaved forest", "Coniferous forest", "Mixed forest", "Transitional woodland/shrub"),
    # CORINE's agricultural areas (2.x), pastures and permanent crops included
    "arable": ("Non-irrigated arable land", "Permanently irrigated land", "Rice fields", "Vineyards",
               "Fruit trees and berry plantations", "Olive groves", "Pastures", "Annual crops associated with permanent crops",
               "Complex cultivation patterns", "Land principally occupied by agriculture, with significant areas of natural vegetation",
               "Agro-forestry areas"),
    "urban": ("Continuous urban fabric", "Discontinuous urban fabric", "Industrial or commercial units",
              "Road and rail networks and associated land", "Port areas", "Airports", "Construction sites"),
}
COVERS = ("water", "forest", "arable", "urban", "other")


@dataclasses.dataclass
class Piece:
    """One image of a scene: native cubes (reflectance x 10000, float32) and where it came from."""

    name: str
    path: Path
    cubes: dict  # {"im10": (4,H,W), "im20": (6,H/2,W/2), "im60": (2,H/6,W/6)}
    labels: tuple | None = None  # CORINE names of the whole piece, when it is one labelled patch

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.cubes["im10"].shape[1:])


@dataclasses.dataclass
class Scene:
    key: str
    kind: str  # "L1C", "L2A" or "synthetic"
    pieces: list


def scene_key(name: str, synthetic: bool = False, seed: str | None = None) -> tuple[str, str]:
    """(scene key, level) of a product, crop or patch name; unknown names key on themselves."""
    m = _NAME.search(name)
    if not m:
        return f"unknown:{name}", "L2A"
    if synthetic:
        return f"synthetic:{m['tile'] or 'tile'}_{m['date']}" + (f"_s{seed}" if seed is not None else ""), "synthetic"
    return f"{m['mission']}_{m['date']}", m["level"]


# --------------------------------------------------------------------------- reading

def _is_product(p: Path) -> bool:
    return p.suffix in (".SAFE", ".zip") or (p.is_dir() and (p / "MTD_MSIL2A.xml").exists())


_SYNTH = re.compile(r"<!-- synthetic: \S+(?: seed=(?P<seed>-?\d+))? -->")


def _synthetic_seed(p: Path) -> tuple[bool, str | None]:
    """(whether the product is synthetic, its generator seed if it records one)."""
    m = p / "manifest.safe"
    found = _SYNTH.search(m.read_text(errors="replace")[:4096]) if m.is_file() else None
    return (found is not None, found["seed"] if found else None)


def _read_v1_patch(folder: Path) -> Piece:
    from dataset_builder.patch_ingest import read_bands
    meta_path = folder / f"{folder.name}_labels_metadata.json"
    try:
        labels = tuple(json.loads(meta_path.read_text())["labels"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(meta_path, f"cannot read the patch's labels ({e})") from None
    bands, _, _ = read_bands(folder, folder.name)
    cubes = {k: np.stack([bands[b] for b in names]).astype(np.float32)
             for k, names in (("im10", BANDS_10M), ("im20", BANDS_20M), ("im60", BANDS_60M))}
    return Piece(folder.name, folder, cubes, labels)


# the files that hold a scene's pixels: a product's 12 spectral bands, a patch folder's 12 band
# GeoTIFFs; not metadata (MTD_*.xml, manifest.safe) nor auxiliary rasters (AOT, WVP, TCI, SCL),
# which two scenes of one generator, processor or tile can share byte for byte
_BAND_FILE = re.compile(r"_B(0[1-9]|1[0-2]|8A)(_\d{2}m\.jp2|\.tif)$")


def pixel_files(path: Path) -> list[Path]:
    """The files of an input that hold its band pixels (a crop or a zip: the file itself)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    return sorted(f for f in path.rglob("*") if f.is_file() and _BAND_FILE.search(f.name))


def expand(paths) -> list[Path]:
    """Inputs as given, with folders of inputs opened one level (``*.mat``, ``*.SAFE``, ``*.zip``,
    patch folders); an input of no known kind is an error naming it."""
    from dataset_builder.bigearthnet_v1 import is_archive_dir, patch_folders
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(p, "no such file or folder")
        if p.suffix.lower() in (".mat", ".h5", ".hdf5") or _is_product(p):
            out.append(p)
        elif p.is_dir() and is_archive_dir(p):
            out += patch_folders(p)
        elif p.is_dir():
            found = sorted([*p.glob("*.mat"), *p.glob("*.SAFE"), *p.glob("*.zip")])
            found += [f for f in sorted(p.iterdir()) if f.is_dir() and f.suffix != ".SAFE" and is_archive_dir(f)]
            if not found:
                raise InputError(p, "a folder with no .mat crop, no Level-2A product and no BigEarthNet patch folder in it")
            out += expand(found)
        else:
            raise InputError(p, "not a super-resolution input: expected a .mat/.h5 crop with im10/im20/im60, "
                                "a Level-2A product or a BigEarthNet patch folder")
    return out


def read_piece(path: Path) -> tuple[Piece, str, str]:
    """(piece, scene key, kind) of one input."""
    from .wald import read_scene
    path = Path(path)
    if path.suffix.lower() in (".mat", ".h5", ".hdf5"):
        piece = Piece(path.stem, path, read_mat(path))
        key, kind = scene_key(path.stem)
    elif _is_product(path):
        piece = Piece(path.name.removesuffix(".SAFE").removesuffix(".zip"), path, read_scene(path))
        synthetic, seed = _synthetic_seed(path)
        key, kind = scene_key(piece.name, synthetic, seed)
    else:
        piece = _read_v1_patch(path)
        key, kind = scene_key(path.name)
    for name, cube in piece.cubes.items():  # bad input is the input's fault, not the weights' later
        bad = int(np.size(cube) - np.isfinite(cube).sum())
        if bad:
            raise InputError(path, f"{name} holds {bad} NaN or infinite value(s): reflectances are finite numbers")
    return piece, key, kind


def load(paths, progress=None, failed: list | None = None) -> list[Scene]:
    """Every input read and grouped into scenes (sorted by key); ``progress(name)`` per input.
    With ``failed`` (a list), an input that cannot be read is appended to it (its InputError) and
    the others are read; without, its error ends the call."""
    scenes: dict[str, Scene] = {}
    for p in expand(paths):
        try:
            piece, key, kind = read_piece(p)
        except InputError as e:
            if failed is None:
                raise
            failed.append(e)
            continue
        if progress:
            progress(piece.name)
        sc = scenes.setdefault(key, Scene(key, kind, []))
        if kind == "L2A" and sc.kind == "L1C":
            sc.kind = "L2A"  # an acquisition present in both levels is listed as L2A
        sc.pieces.append(piece)
    return [scenes[k] for k in sorted(scenes)]


# --------------------------------------------------------------------------- land cover

def cover_of_labels(labels) -> str:
    """The cover a labelled patch is counted under: water if any label is water (a thin coastline
    makes a patch hard for super-resolution), else the cover with most labels, else other."""
    counts = {c: sum(lab in names for lab in labels) for c, names in COVER_OF_LABEL.items()}
    if counts["water"]:
        return "water"
    best = max(counts, key=counts.get)
    return best if counts[best] else "other"


def spectral_cover(b10: np.ndarray) -> str:
    """The cover of an unlabelled patch from its 10 m bands (B02 B03 B04 B08): water where most
    pixels have NDWI (B03 - B08)/(B03 + B08) > 0; else forest, arable or urban by the median
    NDVI (> 0.7 dense canopy, > 0.3 crops and grass, else bare or built-up: "urban" here means
    not vegetated, which is what matters for super-resolution)."""
    b03, b04, b08 = (b10[i].astype(np.float64) for i in (1, 2, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        ndwi = np.nan_to_num((b03 - b08) / (b03 + b08))
        ndvi = np.nan_to_num((b08 - b04) / (b08 + b04))
    if (ndwi > 0).mean() > 0.5:
        return "water"
    v = float(np.median(ndvi))
    return "forest" if v > 0.7 else "arable" if v > 0.3 else "urban"


def patch_cover(piece: Piece, r: int, c: int, side: int = PATCH_PX) -> tuple[str, str]:
    """(cover, "labels" or "spectra") of the patch at 10 m rows r.., columns c.. of a piece."""
    if piece.labels is not None:
        return cover_of_labels(piece.labels), "labels"
    return spectral_cover(piece.cubes["im10"][:, r:r + side, c:c + side]), "spectra"
