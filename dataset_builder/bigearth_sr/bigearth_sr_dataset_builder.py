"""bigearth_sr: BigEarthNet-style Sentinel-2 patches with all 12 bands super-resolved to 10 m."""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (Blosc filters of the archive)
import numpy as np
import tensorflow_datasets as tfds

from bigearth import nomenclature as nom
from bigearth.record import ARRAYS, META_DEFAULTS, META_FIELDS, RGB_INDEX, SPLITS, plain
from dataset_builder import archive, inputs, upsample
from dataset_builder.sr import SIZES

CHUNK = 256  # archive rows per Beam element
# `tfds build bigearth_sr` (every config) when some configs were skipped: not 0, which would read as
# "every config built", nor 1, an error (what could be built was)
EXIT_SKIPPED = 3
SKIPPED: list = []  # the configs this process skipped, in the order tfds build made them


def under_tfds_build() -> bool:
    """Whether this process is the `tfds build` command (its module is loaded), not a Python caller:
    there a refusal, a stop or a skip is said in one line with an exit code, not raised."""
    return "tensorflow_datasets.scripts.cli.build" in sys.modules


def config_named(name: str, argv=None) -> bool:
    """Whether the `tfds build` command line asks for the config ``name`` by name
    (``bigearth_sr/<name>``, ``--config <name>``, ``--config_idx``) rather than for every config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for a in argv:
        ds = a.split(":", 1)[0]
        if ds.startswith("bigearth_sr/") and ds.split("/", 1)[1] == name:
            return True
        if a in ("--config", "--config_idx") or a.startswith(("--config=", "--config_idx=")):
            return True  # one config asked for: the one TFDS made this builder for
    return False

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
    sr_model: str = "default"  # DSen2's shipped weights (dataset_builder.sr.weights.MODELS)


def config_name(variant: str, up: str, sr_model: str = "default") -> str:
    """``super`` and ``rgb`` are DSen2, the paper's method, with the fast default weights;
    ``super_paper`` and ``rgb_paper`` DSen2 at the published size; the other methods are named
    after it."""
    if up == "dsen2":
        return variant if sr_model == "default" else f"{variant}_{sr_model}"
    return f"{variant}_{up}"


def _configs() -> list[BigearthSrConfig]:
    out = []
    # DSen2 first: the builder class without a config, like TFDS by name, gives the default
    methods = [(up, "default") for up in sorted(upsample.available(), key=lambda u: u != "dsen2")]
    methods[1:1] = [("dsen2", model) for model in SIZES if model != "default"]  # the other shipped networks
    for up, model in methods:
        what = up if model == "default" else f"{up} ({model}-size network, {' x '.join(map(str, SIZES[model]))})"
        out.append(BigearthSrConfig(
            name=config_name("super", up, model), variant="super", upsampling=up, sr_model=model,
            description=f"data_super: all 12 bands at 10 m (uint16, 12x120x120, B01..B12), {what} super-resolution"))
        out.append(BigearthSrConfig(
            name=config_name("rgb", up, model), variant="rgb", upsampling=up, sr_model=model,
            description=f"data_rgb: B04, B03, B02 at 10 m (uint16, 3x120x120), from the {what} build"))
    out.append(BigearthSrConfig(
        name="native", variant="native", upsampling=None,
        description="data_10m (4x120x120), data_20m (6x60x60), data_60m (2x20x20): every band at its own resolution"))
    return out


class Builder(tfds.core.GeneratorBasedBuilder):
    """BigEarthNet-style patches from Sentinel-2 Level-2A products, super-resolved to 10 m."""

    VERSION = tfds.core.Version("1.4.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: super/rgb per upsampling method, and native.",
                     "1.1.0": "BigEarthNet v2 as input; metadata v1_name and s1_name (the patch's other names).",
                     "1.2.0": "DSen2 (guarded, cross-scene weights) is the default: configs super and rgb "
                              "(were super_dsen2, rgb_dsen2); super_bilinear, super_bicubic and the rest stay.",
                     "1.3.0": "super_paper and rgb_paper: DSen2 at the published size (6 blocks of 128 features).",
                     "1.4.0": "labels_multi_hot and labels_19_multi_hot (uint8, 43 and 19): labels that batch; "
                              "as_supervised gives (image, labels_multi_hot)."}
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
            # the same labels as fixed-length vectors: a batch of them is a (batch, classes) tensor,
            # what a sigmoid + BCE multilabel loss takes (the ragged index lists do not batch)
            "labels_multi_hot": tfds.features.Tensor(shape=(nom.NUM_CLASSES,), dtype=np.uint8,
                                                     doc="1 where the patch has the class, in the order of labels' names"),
            "labels_19_multi_hot": tfds.features.Tensor(shape=(nom.NUM_CLASSES_19,), dtype=np.uint8,
                                                        doc="1 where the patch has the class, in labels_19's order"),
            "filename": tfds.features.Text(doc="patch name <mission>_MSIL2A_<datetime>_<x>_<y>"),
            "metadata": tfds.features.FeaturesDict({k: _feature(k) for k in METADATA}),
        })
        main = next(iter(arrays)) if cfg.variant != "native" else None
        return self.dataset_info_from_configs(
            features=features,
            supervised_keys=(main, "labels_multi_hot") if main else None,
            homepage="https://doi.org/10.3390/rs11243056",
            metadata=tfds.core.MetadataDict(),  # "source": what it was built from (source_record)
        )

    def download_and_prepare(self, *, download_config=None, **kwargs):
        with _refused_as_a_command():  # a source the package refuses: its one line, under `tfds build`
            return self._prepare(download_config, **kwargs)

    def _prepare(self, download_config, **kwargs):
        every = under_tfds_build() and not config_named(self.builder_config.name)
        why = self._cannot_come_from_source(download_config)
        if why:
            # `tfds build bigearth_sr` builds every config: one the source cannot give is skipped
            # with its reason, before TFDS makes any folder for it, and the others go on; asked for
            # by name (on the command line or from Python), it is an error
            if not every:
                self._fail(why, ValueError)
            print(f"skipped {self.name}/{self.builder_config.name}: {why}", flush=True)
            self._skipped = why  # the CLI prints the info of what it built next: one line, not a card
            SKIPPED.append(self.builder_config.name)
            self._end_of_every_config()
            return None
        out = self._prepare_served(download_config, **kwargs)
        if every:
            self._end_of_every_config()
        return out

    def _end_of_every_config(self) -> None:
        """After the last of every config `tfds build bigearth_sr` made: when some were skipped, the
        exit code says so (EXIT_SKIPPED), with one line counting them."""
        if self.builder_config.name != self.BUILDER_CONFIGS[-1].name or not SKIPPED:
            return
        print(f"{len(SKIPPED)} of {len(self.BUILDER_CONFIGS)} configs skipped (the source cannot give them, listed "
              f"above): exit code {EXIT_SKIPPED}; name the configs you want (bigearth_sr/<config>) for exit code 0",
              file=sys.stderr, flush=True)
        raise SystemExit(EXIT_SKIPPED)

    def _prepare_served(self, download_config, **kwargs):
        # Beam when the user asks for it (`tfds build --beam_pipeline_options=...` or a runner),
        # else a plain generator: the small default needs no pipeline
        self.use_beam = download_config is not None and (download_config.beam_options is not None
                                                          or download_config.beam_runner is not None)
        self.direct_runner = self.use_beam and _is_direct_runner(download_config)
        # bounded memory, whatever the count; a stop said in one line, as the package's commands say it
        with _stopped_as_a_command(), _shuffle_memory(inputs.shuffle_memory_bytes()), _tensorflow_quiet_in_workers():
            stale = self._stale(download_config, kwargs.get("download_dir"))
            if stale:  # TFDS would print "Reusing dataset" and serve the old examples
                self._fail(stale, ValueError)
            out = super().download_and_prepare(download_config=download_config, **kwargs)
        self._check_counts()
        return out

    def _check_counts(self) -> None:
        """Every split holds as many examples as the archive: Beam's DirectRunner was seen to
        finish without error having lost examples (up to 22 % of a split at 7,890 patches,
        benchmarks/scale.py), so what it wrote is checked, and removed when short, before
        anyone reads it."""
        want = getattr(self, "_expected", None)
        if not want:  # reused, not built now: checked when it was built
            return
        got = {s: self.info.splits[s].num_examples for s in want if s in self.info.splits}
        short = {s: (got.get(s, 0), n) for s, n in want.items() if got.get(s, 0) != n}
        if not short:
            return
        shutil.rmtree(self.data_dir, ignore_errors=True)
        lost = ", ".join(f"{s}: {g} of {n}" for s, (g, n) in short.items())
        why = (f"the {'Beam pipeline' if getattr(self, 'use_beam', False) else 'generator'} wrote fewer examples than "
               f"the archive holds ({lost}); nothing was kept ({self.data_dir} removed): rerun without "
               f"--beam_pipeline_options (the generator), or with a distributed runner")
        self._fail(why, RuntimeError)

    @property
    def info(self):
        if getattr(self, "_skipped", None):
            return _NotBuilt(f"{self.name}/{self.builder_config.name}")
        return super().info

    def _manual_dir(self, download_config) -> Path:
        return Path(getattr(download_config, "manual_dir", None) or Path(self._data_dir_root) / "downloads" / "manual")

    def _stale(self, download_config, download_dir=None) -> str | None:
        """Why the dataset already in the data_dir no longer is what --manual_dir gives, or None
        (none there, a rebuild asked for, no source to compare with, or the same source). The
        source is compared by content: its archive (for products or patches, the one their build
        makes; the build resumes, so an unchanged source costs the digests of its inputs)."""
        if not self.data_path.exists():
            return None
        if download_config is not None and download_config.download_mode.overwrite_dataset:
            return None
        recorded = (self.info.metadata or {}).get("source")
        cfg = self.builder_config
        manual = self._manual_dir(download_config)
        work = Path(download_dir or Path(self._data_dir_root) / "downloads") / "bigearth_sr_build"
        try:
            path = inputs.archive_for(manual, work, cfg.upsampling, workers=inputs.default_workers(),
                                      sr_model=cfg.sr_model, progress=True)
        except FileNotFoundError:  # no source given: the dataset is used as it is, as TFDS does
            return None
        now = source_record(path)
        if recorded is not None and recorded.get("archive_sha256") == now["archive_sha256"]:
            return None
        return (f"{self.data_dir} holds a dataset built from another source than --manual_dir {manual} gives now "
                f"({source_change(recorded, now)}): rerun with --overwrite to rebuild it (from Python: "
                f"download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS)")

    def _cannot_come_from_source(self, download_config) -> str | None:
        """Why this config cannot be built from the manual_dir (an archive of another upsampling),
        or None. Reads only the archive's attributes."""
        cfg = self.builder_config
        manual = self._manual_dir(download_config)
        try:
            other = inputs.other_upsampling(manual, cfg.upsampling, cfg.sr_model)
        except FileNotFoundError:
            return None  # TFDS's own message about the manual_dir follows
        if other is None:
            return None
        path, found = other
        need = inputs.method_label(cfg.upsampling, cfg.sr_model)
        return (f"{path} was built with --upsampling {found} and this config needs {need} "
                f"(the configs of {found}, and native, come from it; for {need}, point --manual_dir at "
                f"the products or patches, or at an archive built with --upsampling {need})")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        # the build shows one bar (patches, rate, time left) in this process, whatever its workers
        path = inputs.archive_for(dl_manager.manual_dir, Path(dl_manager.download_dir) / "bigearth_sr_build",
                                  cfg.upsampling, workers=inputs.default_workers(), sr_model=cfg.sr_model,
                                  progress=True)
        self.info.metadata["source"] = source_record(path)  # kept with the dataset: a rerun compares it
        with h5py.File(path, "r") as f:
            split_col = f["split"].asstr()[:]
        present = [s for s in SPLITS if (split_col == s).any()]
        self._expected = {s: int((split_col == s).sum()) for s in present}
        if getattr(self, "direct_runner", False):
            self._refuse_what_memory_cannot_hold(path, len(split_col))
        return {s: self._generate_examples(str(path), np.flatnonzero(split_col == s).tolist()) for s in present}

    def _refuse_what_memory_cannot_hold(self, path: Path, rows: int) -> None:
        """Beam's DirectRunner keeps every serialized example in this machine's memory until the
        shards are written (TFDS's writer counts and sizes them first, then groups them by shard):
        a build it cannot hold is refused before the pipeline starts, naming the ways that can."""
        from bigearth.distinfo import available_memory
        need = direct_runner_bytes(rows, self.builder_config.variant)
        free = available_memory()
        if free is None or need <= free:
            return
        why = (f"{path}: {rows} patches through Beam's DirectRunner need about {need / 1e9:.0f} GB of memory (it holds "
               f"every example until the shards are written; measured in benchmarks/RESULTS.md) and {free / 1e9:.0f} GB "
               f"is available: leave out --beam_pipeline_options (the generator stays under 1 GB, whatever the count), or run "
               f"a distributed runner (Dataflow, Spark, Flink)")
        self._fail(why, MemoryError)

    def _fail(self, why: str, error: type[Exception]) -> None:
        """Under `tfds build`: one line on stderr and exit 1 (no traceback); from Python: ``error``."""
        if under_tfds_build():
            print(f"error: {self.name}/{self.builder_config.name}: {why}", file=sys.stderr, flush=True)
            raise SystemExit(1)
        raise error(f"{self.name}/{self.builder_config.name}: {why}")

    def _generate_examples(self, path: str, rows: list[int]):
        variant = self.builder_config.variant
        if getattr(self, "use_beam", False):
            beam = tfds.core.lazy_imports.apache_beam
            chunks = [rows[i:i + CHUNK] for i in range(0, len(rows), CHUNK)]
            return beam.Create(chunks) | beam.FlatMap(examples, path=path, variant=variant)
        return examples(rows, path, variant)


# what a stopped `tfds build` leaves for its rerun (TFDS removes its own incomplete folder)
KEPT = "the archive's finished tiles are kept in the data dir's downloads/ and not built again"


@contextlib.contextmanager
def _stopped_as_a_command():
    """Under `tfds build`, Ctrl-C, SIGTERM and SIGHUP end the build as they end the package's own
    commands (``bigearth.errors.run_command``): the lock and temporaries go (the ``finally``s run),
    one line, exit 130, 143 or 129. From Python nothing changes: the caller's handlers decide."""
    if not under_tfds_build():
        yield
        return
    from bigearth.stopping import exit_code, stop_line, stop_on_signals
    try:
        with stop_on_signals():
            yield
    except KeyboardInterrupt as e:
        print(f"\n{stop_line(e, KEPT)}", file=sys.stderr, flush=True)
        raise SystemExit(exit_code(e)) from None


@contextlib.contextmanager
def _refused_as_a_command():
    """Under `tfds build`, a source the package refuses (a damaged or changed archive, an input
    that failed) ends the build with the line every other reader says (``error: <file>: <what>``)
    and exit 1, not a traceback; from Python the error is raised as it is."""
    from bigearth.errors import ReportedError
    try:
        yield
    except ReportedError as e:
        if not under_tfds_build():
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


@contextlib.contextmanager
def _tensorflow_quiet_in_workers():
    """The build's worker processes start by spawning, and a spawned process first imports the
    parent's ``__main__`` (here the ``tfds`` script, so tensorflow_datasets and TensorFlow): every
    worker would print TensorFlow's start-up lines again (oneDNN, CPU features, Beam's apitools
    warning), which no log level silences (they come before absl's logging is initialised). The
    workers need nothing of ``__main__`` (their tasks are this package's functions), so while
    they start it is hidden from multiprocessing (no ``__spec__``, no ``__file__``: as for
    ``python -c``), and restored after."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


@contextlib.contextmanager
def _shuffle_memory(limit: int):
    """TFDS's in-memory shuffle buffer lowered to ``limit`` bytes for this build (a module
    constant of tensorflow_datasets.core.shuffle, read when examples are added), then restored."""
    from tensorflow_datasets.core import shuffle
    saved = getattr(shuffle, "MAX_MEM_BUFFER_SIZE", None)
    if saved is None:  # another TFDS: its own buffering
        yield
        return
    shuffle.MAX_MEM_BUFFER_SIZE = min(saved, limit)
    try:
        yield
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE = saved


# Beam's DirectRunner, measured (benchmarks/scale.py, tfds-beam rows, 2 workers, super): 3.3 GB at
# 261 patches, 8.8 GB at 2,970, 16.0 GB at 7,890: ~3 GB for the runner and its workers, and 4.8-5.8
# bytes of memory per byte of the examples' arrays (the larger figure kept)
DIRECT_RUNNER_BASE_BYTES = 3_000_000_000
DIRECT_RUNNER_BYTES_PER_BYTE = 5.8


def example_bytes(variant: str) -> int:
    """The bytes of one example's arrays in ``variant``."""
    total = 0
    for key, idx in VARIANT_ARRAYS[variant].values():
        shape, dtype = ARRAYS[key]
        bands = shape[0] if idx is None else len(idx)
        total += bands * int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
    return total


def direct_runner_bytes(rows: int, variant: str) -> int:
    """Memory a DirectRunner build of ``rows`` examples of ``variant`` takes, about."""
    return int(DIRECT_RUNNER_BASE_BYTES + rows * example_bytes(variant) * DIRECT_RUNNER_BYTES_PER_BYTE)


def _is_direct_runner(download_config) -> bool:
    """Whether the Beam pipeline runs on this machine (DirectRunner: Beam's default runner)."""
    runner = download_config.beam_runner
    if runner is None and download_config.beam_options is not None:
        from apache_beam.options.pipeline_options import StandardOptions
        runner = download_config.beam_options.view_as(StandardOptions).runner
    name = runner if runner is None or isinstance(runner, str) else type(runner).__name__
    return name in (None, "DirectRunner", "direct", "BundleBasedDirectRunner", "SwitchingDirectRunner", "FnApiRunner")


class _NotBuilt:
    """What ``builder.info`` is after a config was skipped: nothing to describe."""

    def __init__(self, name: str):
        self.full_name = name

    def __repr__(self) -> str:
        return f"{self.full_name}: not built (skipped, see above)"


def source_record(path) -> dict:
    """What a dataset is built from, by content: the archive's sha256 and the fingerprint of each
    tile or acquisition its manifest lists (so that a rerun can say which changed)."""
    checked = archive.check(path, need_sha=True)
    tiles = (checked.manifest or {}).get("tiles") or {}
    return {"archive_sha256": checked.sha256,
            "tiles": {t: v.get("fingerprint") or v.get("sha256") for t, v in sorted(tiles.items())}}


def source_change(old: dict | None, new: dict) -> str:
    """What differs between two ``source_record``s, in words."""
    if not old:
        return "the dataset records no source"
    a, b = old.get("tiles") or {}, new["tiles"]
    parts = [f"{len(v)} tile(s) {how}: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}" for how, v in (
        ("removed", sorted(set(a) - set(b))), ("added", sorted(set(b) - set(a))),
        ("changed", sorted(t for t in set(a) & set(b) if a[t] != b[t]))) if v]
    return "; ".join(parts) or (f"its archive's sha256 was {str(old.get('archive_sha256'))[:12]}…, it is "
                                f"{str(new['archive_sha256'])[:12]}… now")


def examples(rows, path: str, variant: str):
    """(key, example) for archive rows; module-level so Beam workers can run it."""
    if not len(rows):
        return
    lo, hi = min(rows), max(rows) + 1  # the span of these rows: a Beam chunk reads its own, not whole columns
    with h5py.File(path, "r") as f:
        cols = {k: f[k].asstr()[lo:hi] if f[k].dtype.kind == "O" else f[k][lo:hi]
                for k in ("name", *METADATA, "classes", "classes_19") if k in f}  # older archives lack META_DEFAULTS
        digests = f[archive.PIXEL_DIGESTS][lo:hi] if archive.PIXEL_DIGESTS in f else None
        for i in rows:
            ex = {}
            j = i - lo
            for feat, (key, idx) in VARIANT_ARRAYS[variant].items():
                a = f[key][i]
                # pixels edited after the build are named, never written into the dataset
                archive.check_pixels(path, cols["name"][j], None if digests is None else digests[j], {key: a})
                ex[feat] = a if idx is None else a[idx]
            ex["labels"] = np.flatnonzero(cols["classes"][j]).tolist()
            ex["labels_19"] = np.flatnonzero(cols["classes_19"][j]).tolist()
            ex["labels_multi_hot"] = (cols["classes"][j] > 0).astype(np.uint8)
            ex["labels_19_multi_hot"] = (cols["classes_19"][j] > 0).astype(np.uint8)
            ex["filename"] = cols["name"][j]
            ex["metadata"] = {k: plain(k, cols[k][j]) if k in cols else META_DEFAULTS[k] for k in METADATA}
            yield cols["name"][j], ex
