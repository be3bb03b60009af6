"""What a folder of inputs holds, and the archive built from it: the TFDS builder's source.

A folder may hold (checked in this order)
  * ``bigearth_sr.h5`` (with its ``manifest.json``): an archive built by ``bigearth-sr build``;
  * Level-2A products (``*.SAFE`` folders or ``S2?_MSIL2A_*.zip``) with CORINE rasters
    (``*.tif`` beside them or in ``clc/``), as ``bigearth-sr synth`` writes them;
  * BigEarthNet v2.0 (reBEN): ``BigEarthNet-S2/``, ``Reference_Maps/`` and ``metadata.parquet``;
  * the BigEarthNet v1 archive: patch folders, in the folder itself or in ``BigEarthNet-v1.0/``,
    with the official lists (optional) in ``lists/``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py

from bigearth.errors import InputError

from .archive import check
from .bigearthnet_v1 import is_archive_dir
from .bigearthnet_v2 import is_v2_root
from .build import ARCHIVE_NAME, MANIFEST_NAME, BuildConfig, build
from .safe import products_in
from .tasks import clc_beside


def describe(folder) -> tuple[str, list[Path]]:
    """(kind, paths): ``archive``, ``products`` or ``bigearthnet``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (the manual_dir / input folder)")
    if (folder / ARCHIVE_NAME).exists():
        besides = _sources_besides_the_archive(folder)
        if besides:  # read one, ignore the other, and the user cannot tell which was read
            raise InputError(folder, f"holds {ARCHIVE_NAME} and {besides} beside it: which to read is not clear; "
                                     f"give a folder that holds one source (the archive alone, or the inputs "
                                     f"without it)")
        return "archive", [folder / ARCHIVE_NAME]
    products = products_in(folder)
    if products:
        return "products", products
    if is_v2_root(folder):
        return "bigearthnet", [folder]
    for cand in (folder, folder / "BigEarthNet-v1.0"):
        if is_archive_dir(cand):
            return "bigearthnet", [cand]
    raise FileNotFoundError(f"{folder}: holds neither {ARCHIVE_NAME}, nor Level-2A products (*.SAFE, "
                            f"S2?_MSIL2A_*.zip), nor BigEarthNet v2 (BigEarthNet-S2/ + metadata.parquet), "
                            f"nor BigEarthNet v1 patch folders")


def _sources_besides_the_archive(folder: Path) -> str | None:
    """What else ``folder`` holds that ``describe`` would build from, in words, or None."""
    products = products_in(folder)
    if products:
        return f"{len(products)} Level-2A product(s) ({products[0].name}{', ...' if len(products) > 1 else ''})"
    if is_v2_root(folder):
        return "BigEarthNet v2 patches"
    if any(is_archive_dir(c) for c in (folder, folder / "BigEarthNet-v1.0")):
        return "BigEarthNet v1 patch folders"
    return None


def default_workers() -> int | None:
    """Build processes: BIGEARTH_SR_WORKERS, else None (the builder chooses: every usable core,
    as far as the tiles, their work and the memory allow)."""
    env = os.environ.get("BIGEARTH_SR_WORKERS", "")
    return int(env) if env.strip() else None


# TFDS's writer holds a split's serialized examples in memory up to 1 GB before it spills them to
# buckets on disk, so the generator's memory grew with the split up to 1 GB (measured 0.81 GB at
# 261 patches, 1.37 GB at 2,970, 1.78 GB at 7,890: benchmarks/scale.py); spilled at 128 MiB it
# stays at 0.81-0.91 GB. BIGEARTH_SR_SHUFFLE_MIB sets another bound (1000: TFDS's own).
SHUFFLE_MEMORY_MIB = 128


def shuffle_memory_bytes() -> int:
    """The TFDS generator's in-memory shuffle bound: BIGEARTH_SR_SHUFFLE_MIB, else 128 MiB."""
    raw = os.environ.get("BIGEARTH_SR_SHUFFLE_MIB", "")
    try:
        mib = int(raw) if raw.strip() else SHUFFLE_MEMORY_MIB
    except ValueError:
        raise ValueError(f"BIGEARTH_SR_SHUFFLE_MIB={raw!r}: give whole MiB, e.g. 128") from None
    return mib << 20


def method_label(upsampling: str | None, sr_model: str = "default") -> str | None:
    """How a build's super-resolution is named to a user: the method, and DSen2's shipped model
    when it is not the default (``dsen2 --sr-model paper``)."""
    return f"{upsampling} --sr-model {sr_model}" if upsampling == "dsen2" and sr_model != "default" else upsampling


def method_folder(upsampling: str, sr_model: str = "default") -> str:
    """The folder name ``archive_for`` builds a method's archive in: the method, ``-<model>`` for a
    DSen2 model other than the default (``dsen2-paper``): what ``method_label`` says, as a name."""
    return upsampling + ("" if upsampling != "dsen2" or sr_model == "default" else f"-{sr_model}")


def archive_upsampling(path) -> str | None:
    """The archive's method as ``method_label`` names it (None: no build configuration recorded),
    read only after every reader's check: an attribute edited after the build is never acted on."""
    check(path)
    with h5py.File(path, "r") as f:
        cfg = f.attrs.get("build_config")
    if not cfg:
        return None
    doc = json.loads(cfg)
    return method_label(doc.get("upsampling"), doc.get("sr_model") or "default")


def other_upsampling(folder, upsampling: str | None, sr_model: str = "default") -> tuple[Path, str] | None:
    """(archive, its method label) when ``folder`` holds an archive built with another upsampling
    (or DSen2 model) than ``upsampling`` (None: any will do), else None: what neither the TFDS
    configs of ``upsampling`` nor ``archive_for`` can take from it."""
    kind, paths = describe(folder)
    if kind != "archive" or upsampling is None:
        return None
    found = archive_upsampling(paths[0])
    return (paths[0], found) if found is not None and found != method_label(upsampling, sr_model) else None


def archive_for(folder, work_dir, upsampling: str = "bilinear", workers: int | None = None, progress: bool = False,
                sr_model: str = "default") -> Path:
    """The archive to read for ``folder``: the one it holds, or one built (resumably) in
    ``work_dir/<method_folder>/`` (``dsen2-<model>`` for a DSen2 model other than the default) from
    its products or BigEarthNet patches."""
    folder = Path(folder)
    kind, paths = describe(folder)
    if kind == "archive":
        check(paths[0])  # every reader's check: what shards or info --verify refuse, TFDS refuses
        other = other_upsampling(folder, upsampling, sr_model)
        if other is not None:
            raise ValueError(f"{other[0]}: built with --upsampling {other[1]}, this configuration needs "
                             f"{method_label(upsampling, sr_model)}")
        return paths[0]
    if upsampling is None:
        # the native cubes are the same in every build: go on with a build already made here (its
        # resume checks every input by content, so it is reused only if nothing changed), else
        # make the cheapest
        made = [p.parent.name for p in Path(work_dir).glob(f"*/{MANIFEST_NAME}")]
        upsampling = next((u for u in ("dsen2", "bilinear", "bicubic") if u in made), "bilinear")
    model = sr_model if upsampling == "dsen2" else "default"
    out = Path(work_dir) / method_folder(upsampling, model)
    cfg = BuildConfig(out_dir=str(out), upsampling=upsampling or "bilinear", sr_model=model, progress=progress)
    if kind == "products":
        clc = clc_beside(folder)
        if not clc:
            raise FileNotFoundError(f"{folder}: products but no CORINE raster (*.tif beside them or in clc/)")
        cfg.clc = [str(p) for p in clc]
    elif (folder / "lists").is_dir():
        cfg.official_lists = str(folder / "lists")
    manifest = build(paths, cfg, workers=workers)
    if manifest["tiles_failed"]:
        raise RuntimeError(f"{folder}: {len(manifest['tiles_failed'])} input(s) failed: "
                           + "; ".join(f"{k}: {v}" for k, v in manifest["tiles_failed"].items()))
    check(out / ARCHIVE_NAME)  # what was reused or merged, as every reader checks it
    return out / ARCHIVE_NAME
