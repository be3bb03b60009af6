"""bigearth_sr: BigEarthNet-style Sentinel-2 patches with all 12 bands super-resolved to 10 m."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (Blosc filters of the archive)
import numpy as np
import tensorflow_datasets as tfds

from bigearth import nomenclature as nom
from bigearth.record import ARRAYS, META_DEFAULTS, META_FIELDS, RGB_INDEX, SPLITS, plain
from dataset_builder import inputs, upsample

CHUNK = 256  # archive rows per Beam element
# feature name -> (archive dataset, band indices or None)
VARIANT_ARRAYS = {
    "super": {"data_super": ("data_super", None)},
    "rgb": {"data_rgb": ("data_super", RGB_INDEX)},
    "native": {"data_10m": ("data_10m", None), "data_20m": ("data_20m", None), "data_60m": ("data_60m", None)},
}


# the record's descriptive fields (bigearth.record.META_FIELDS), but the name (the "filename"
# feature) and the split (the TFDS split)
METADATA = tuple(k for k in META_FIELDS if k not in ("name", "split"))


def _feature(key: str):
    """The TFDS feature of a descriptive field, from its kind in the record's definition."""
    kind, shape = META_FIELDS[key]
    if kind == "str":
        return tfds.features.Text()
    if shape:
        return tfds.features.Tensor(shape=shape, dtype=np.dtype(kind),
                                    doc="ulx, uly, lrx, lry in the CRS" if key == "bounds" else None)
    return np.int32 if np.dtype(kind).kind in "iu" else np.dtype(kind)


@dataclasses.dataclass
class BigearthSrConfig(tfds.core.BuilderConfig):
    variant: str = "super"  # super | rgb | native
    upsampling: str | None = "dsen2"  # None: the native cubes do not depend on it


def config_name(variant: str, up: str) -> str:
    """``super`` and ``rgb`` are DSen2, the paper's method; the other methods are named after it."""
    return variant if up == "dsen2" else f"{variant}_{up}"


def _configs() -> list[BigearthSrConfig]:
    out = []
    # DSen2 first: the builder class without a config, like TFDS by name, gives the default
    for up in sorted(upsample.available(), key=lambda u: u != "dsen2"):
        out.append(BigearthSrConfig(
            name=config_name("super", up), variant="super", upsampling=up,
            description=f"data_super: all 12 bands at 10 m (uint16, 12x120x120, B01..B12), {up} super-resolution"))
        out.append(BigearthSrConfig(
            name=config_name("rgb", up), variant="rgb", upsampling=up,
            description=f"data_rgb: B04, B03, B02 at 10 m (uint16, 3x120x120), from the {up} build"))
    out.append(BigearthSrConfig(
        name="native", variant="native", upsampling=None,
        description="data_10m (4x120x120), data_20m (6x60x60), data_60m (2x20x20): every band at its own resolution"))
    return out


class Builder(tfds.core.GeneratorBasedBuilder):
    """BigEarthNet-style patches from Sentinel-2 Level-2A products, super-resolved to 10 m."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: super/rgb per upsampling method, and native.",
                     "1.1.0": "BigEarthNet v2 as input; metadata v1_name and s1_name (the patch's other names).",
                     "1.2.0": "DSen2 (guarded, cross-scene weights) is the default: configs super and rgb "
                              "(were super_dsen2, rgb_dsen2); super_bilinear, super_bicubic and the rest stay."}
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "super"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Point --manual_dir at a folder holding one of:
      * bigearth_sr.h5 (+ manifest.json), an archive built by `bigearth-sr build` (for the super
        and rgb configs its upsampling must be the config's);
      * Sentinel-2 Level-2A products (*.SAFE folders or S2?_MSIL2A_*.zip) with CORINE Land
        Cover rasters (*.tif beside them or in clc/), e.g. from `bigearth-sr synth --out DIR`;
      * BigEarthNet v2.0 (reBEN): BigEarthNet-S2/, Reference_Maps/ and metadata.parquet (with
        metadata_for_patches_with_snow_cloud_or_shadow.parquet), as its archives unpack;
      * the BigEarthNet v1 archive (its patch folders, directly or in BigEarthNet-v1.0/), with
        the official lists (train/val/test, snow, cloud .csv[.bz2]) in lists/.
    Products and patches are built into <download_dir>/bigearth_sr_build/<upsampling>/ with
    worker processes on every usable core, as far as the tiles, their work and the memory allow
    (BIGEARTH_SR_WORKERS overrides); that build resumes after an interruption.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        arrays = {}
        for feat, (key, idx) in VARIANT_ARRAYS[cfg.variant].items():
            shape = ARRAYS[key][0] if idx is None else (len(idx), *ARRAYS[key][0][1:])
            arrays[feat] = tfds.features.Tensor(shape=shape, dtype=np.uint16, encoding=tfds.features.Encoding.BYTES,
                                                doc="bands first; reflectance x 10000")
        features = tfds.features.FeaturesDict({
            **arrays,
            "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=nom.CLASS_NAMES),
                                             doc="CORINE Land Cover level-3 classes (BigEarthNet's 43)"),
            "labels_19": tfds.features.Sequence(tfds.features.ClassLabel(names=nom.CLASS_NAMES_19),
                                                doc="BigEarthNet-19 classes"),
            "filename": tfds.features.Text(doc="patch name <mission>_MSIL2A_<datetime>_<x>_<y>"),
            "metadata": tfds.features.FeaturesDict({k: _feature(k) for k in METADATA}),
        })
        main = next(iter(arrays)) if cfg.variant != "native" else None
        return self.dataset_info_from_configs(
            features=features,
            supervised_keys=(main, "labels") if main else None,
            homepage="https://doi.org/10.3390/rs11243056",
        )

    def download_and_prepare(self, *, download_config=None, **kwargs):
        why = self._cannot_come_from_source(download_config)
        if why:
            # `tfds build bigearth_sr` builds every config: one the source cannot give is skipped
            # with its reason, before TFDS makes any folder for it, and the others go on; asked for
            # by name from Python, it is an error
            if "tensorflow_datasets.scripts.cli.build" in sys.modules:
                print(f"skipped {self.name}/{self.builder_config.name}: {why}", flush=True)
                self._skipped = why  # the CLI prints the info of what it built next: one line, not a card
                return None
            raise ValueError(f"{self.name}/{self.builder_config.name}: {why}")
        # Beam when the user asks for it (`tfds build --beam_pipeline_options=...` or a runner),
        # else a plain generator: the small default needs no pipeline
        self.use_beam = download_config is not None and (download_config.beam_options is not None
                                                          or download_config.beam_runner is not None)
        return super().download_and_prepare(download_config=download_config, **kwargs)

    @property
    def info(self):
        if getattr(self, "_skipped", None):
            return _NotBuilt(f"{self.name}/{self.builder_config.name}")
        return super().info

    def _cannot_come_from_source(self, download_config) -> str | None:
        """Why this config cannot be built from the manual_dir (an archive of another upsampling),
        or None. Reads only the archive's attributes."""
        cfg = self.builder_config
        manual = getattr(download_config, "manual_dir", None) or Path(self._data_dir_root) / "downloads" / "manual"
        try:
            other = inputs.other_upsampling(manual, cfg.upsampling)
        except FileNotFoundError:
            return None  # TFDS's own message about the manual_dir follows
        if other is None:
            return None
        path, found = other
        return (f"{path} was built with --upsampling {found} and this config needs {cfg.upsampling} "
                f"(the configs of {found}, and native, come from it; for {cfg.upsampling}, point --manual_dir at "
                f"the products or patches, or at an archive built with --upsampling {cfg.upsampling})")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        path = inputs.archive_for(dl_manager.manual_dir, Path(dl_manager.download_dir) / "bigearth_sr_build",
                                  cfg.upsampling, workers=inputs.default_workers())
        with h5py.File(path, "r") as f:
            split_col = f["split"].asstr()[:]
        present = [s for s in SPLITS if (split_col == s).any()]
        return {s: self._generate_examples(str(path), np.flatnonzero(split_col == s).tolist()) for s in present}

    def _generate_examples(self, path: str, rows: list[int]):
        variant = self.builder_config.variant
        if getattr(self, "use_beam", False):
            beam = tfds.core.lazy_imports.apache_beam
            chunks = [rows[i:i + CHUNK] for i in range(0, len(rows), CHUNK)]
            return beam.Create(chunks) | beam.FlatMap(examples, path=path, variant=variant)
        return examples(rows, path, variant)


class _NotBuilt:
    """What ``builder.info`` is after a config was skipped: nothing to describe."""

    def __init__(self, name: str):
        self.full_name = name

    def __repr__(self) -> str:
        return f"{self.full_name}: not built (skipped, see above)"


def examples(rows, path: str, variant: str):
    """(key, example) for archive rows; module-level so Beam workers can run it."""
    if not len(rows):
        return
    lo, hi = min(rows), max(rows) + 1  # the span of these rows: a Beam chunk reads its own, not whole columns
    with h5py.File(path, "r") as f:
        cols = {k: f[k].asstr()[lo:hi] if f[k].dtype.kind == "O" else f[k][lo:hi]
                for k in ("name", *METADATA, "classes", "classes_19") if k in f}  # older archives lack META_DEFAULTS
        for i in rows:
            ex = {}
            for feat, (key, idx) in VARIANT_ARRAYS[variant].items():
                a = f[key][i]
                ex[feat] = a if idx is None else a[idx]
            j = i - lo
            ex["labels"] = np.flatnonzero(cols["classes"][j]).tolist()
            ex["labels_19"] = np.flatnonzero(cols["classes_19"][j]).tolist()
            ex["filename"] = cols["name"][j]
            ex["metadata"] = {k: plain(k, cols[k][j]) if k in cols else META_DEFAULTS[k] for k in METADATA}
            yield cols["name"][j], ex
