"""The build's configuration: every option, what the archive records of it, and the fingerprint
of everything besides a part's own inputs that decides a part's content."""
from __future__ import annotations

import dataclasses
import hashlib
import json

from bigearth import __version__
from bigearth.files import content_digest

from . import archive, screening, upsample

PART_FORMAT = 4  # what a part holds (2: statistics per split; 3: v1_name, s1_name; 4: Fletcher-32 chunks); older parts are rebuilt


@dataclasses.dataclass
class BuildConfig:
    out_dir: str
    upsampling: str = "dsen2"
    sr_weights: str | None = None  # dsen2: bundle .npz, or "2x.hdf5,6x.hdf5"; None = the shipped default
    sr_device: str = "cpu"
    sr_precision: str = "auto"
    sr_adapt: int = 0  # dsen2: fine-tuning steps on each tile's (acquisition's) own bands first; 0: none
    sr_model: str = "default"  # dsen2: the shipped weights used when sr_weights is None (sr.weights.MODELS)
    clc: list = dataclasses.field(default_factory=list)
    labels_json: str | None = None  # BigEarthNet label JSONs instead of CORINE rasters
    clc_values: str = "auto"
    label_res: int = 20
    thresholds: dict = dataclasses.field(default_factory=lambda: dict(screening.DEFAULT_THRESHOLDS))
    compression: str = archive.DEFAULT_COMPRESSION
    checksums: bool = True  # Fletcher-32 per chunk and meta_sha256 (archive.py); off only to measure their cost
    merge: str = "copy"
    split_fractions: tuple = (0.6, 0.2, 0.2)
    official_lists: str | None = None
    min_label_share: float = 0.0  # BigEarthNet v2: share of a patch a reference-map class needs
    strict: bool = False
    progress: bool = True

    def upsampler(self) -> upsample.Upsampler:
        opts = {"weights": self.sr_weights, "device": self.sr_device, "precision": self.sr_precision,
                "adapt": self.sr_adapt, "model": self.sr_model}
        return upsample.get(self.upsampling, **(opts if self.upsampling == "dsen2" else {}))

    def super_resolution(self) -> dict:
        """The method as recorded in the archive and manifest (for DSen2: the weights' sha256 and
        provenance); computed once, and part of the fingerprint."""
        if "_sr" not in self.__dict__:
            up = self.upsampler()
            self.__dict__["_sr"] = up.describe() if hasattr(up, "describe") else {"method": up.name}
        return self.__dict__["_sr"]

    def label_sources(self) -> dict:
        """Content digests of the label inputs every task may read: the CORINE rasters (in the
        order they are searched) and the official lists. Computed once (in the process that
        plans) and carried to the workers with the config. An unreadable file gets a digest of
        its error: it fails the tasks that need it, when they need it."""
        if "_labels" not in self.__dict__:
            from .bigearthnet_v1 import list_files

            d = {"clc": [_digest_or_error(p) for p in self.clc]}
            if self.official_lists:
                d["lists"] = {f.name: _digest_or_error(f) for f in list_files(self.official_lists)}
            self.__dict__["_labels"] = d
        return self.__dict__["_labels"]

    def fingerprint(self) -> str:
        """What decides every part's content besides its own inputs (options, the method and its
        weights, the label sources' content, the version): see ``task_fingerprint``."""
        keys = ("upsampling", "clc_values", "label_res", "thresholds", "compression", "checksums", "split_fractions",
                "min_label_share")
        d = {k: getattr(self, k) for k in keys}
        d["super_resolution"] = self.super_resolution()
        d["label_sources"] = self.label_sources()
        d["labels_json"] = bool(self.labels_json)
        d["official_lists"] = bool(self.official_lists)
        d["version"] = __version__
        d["part_format"] = PART_FORMAT
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:16]

    def public(self) -> dict:
        """The configuration the archive and manifest record (and the merge's fingerprint includes).
        Whether bars were drawn shapes nothing: left out, so a build rerun with or without
        --no-progress keeps the archive as it is (and what was made from it stays valid)."""
        d = dataclasses.asdict(self)
        del d["progress"]
        d["super_resolution"] = self.super_resolution()
        d["clc"] = [str(p) for p in self.clc]
        d["split_fractions"] = list(self.split_fractions)
        return d


def _digest_or_error(path) -> str:
    try:
        return content_digest(path)
    except OSError as e:
        return f"unreadable: {type(e).__name__}"
