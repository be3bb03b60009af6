"""The units of Algorithm 1 and their resumable execution: planning tasks from the inputs
(failures recorded per input), fingerprinting what each task reads, and running one task or
reusing its part when nothing that shaped it changed."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import traceback
from pathlib import Path

from bigearth import nomenclature as nom
from bigearth.errors import EnvironmentFailure, InputError
from bigearth.files import (content_digest, disk_full_error, done_record, is_disk_full, mark_done, recording_reads,
                           sha256_file)

from . import bigearthnet_v1, bigearthnet_v2
from .config import BuildConfig
from .labels import JsonLabeler
from .products import process_product
from .safe import Product, open_product, products_in


@dataclasses.dataclass
class Task:
    """One unit of Algorithm 1: a product, or one tile_source's patches of the BigEarthNet archive."""

    id: str
    kind: str  # "product", "bigearthnet" (v1 tile_source) or "bigearthnet_v2" (v2 product)
    source: object  # Product, or list of patch folders
    count: int  # grid patches (products) or patch folders: the progress bars' unit
    work: float = 0.0  # expected seconds of one core: what Algorithm 1 balances
    screened: dict | None = None  # v2: patches its metadata screens out, by reason (drops known when planned)


# Expected cost, in seconds of one core (benchmarks/RESULTS.md, measured on 2 cores): decoding a
# product is paid for every grid patch (44 s for a full tile of 8,281), everything after it per
# kept patch (bilinear: (55.7 - 44) s over 5,465 kept; DSen2: 0.065 s one row of patches per call,
# x 0.87 in groups of rows on cloudy tiles); a BigEarthNet patch folder costs its reads, digests,
# labels and writing (benchmarks/ingest.py: ~6 ms with bilinear on one core, so ~4 ms besides the
# method) and its share of the block it is super-resolved in (0.09 s alone, x 0.74 in blocks
# around cloudy holes, x 0.57 on a clear tile: RESULTS, "DSen2's reach paid once per group of
# patches"). With equal grids (every full tile has 8,281 patches) only the kept share tells
# products apart.
DECODE_S_PER_GRID_PATCH = 44.0 / 8281
KEPT_PATCH_S = {"bilinear": 11.7 / 5465, "bicubic": 11.7 / 5465, "dsen2": 0.057}
READ_S_PER_FOLDER = 1 / 250
FOLDER_PATCH_S = {"dsen2": 0.067}
# DSen2's work with another shipped network, as a multiple of the default's (same benchmark,
# --model paper: 9.7x on products, 8.3x on folders), and adaptation's, paid once per task: seconds
# per fine-tuning step of both networks (RESULTS: 100 steps cost 11 s with the default, 99 s with
# the paper model)
DSEN2_MODEL_COST = {"default": 1.0, "paper": 9.0}
ADAPT_S_PER_STEP = {"default": 0.11, "paper": 0.99}


def expected_work(task_kind: str, source, count: int, cfg) -> float:
    """Expected seconds of one core for a task of ``count`` grid patches or folders, built as
    ``cfg`` says (its upsampling, DSen2 model and adaptation steps)."""
    upsampling, model = cfg.upsampling, cfg.sr_model
    scale = DSEN2_MODEL_COST.get(model, 1.0) if upsampling == "dsen2" else 1.0
    adapt = ADAPT_S_PER_STEP.get(model, 0.0) * cfg.sr_adapt if upsampling == "dsen2" else 0.0
    per_kept = KEPT_PATCH_S.get(upsampling, KEPT_PATCH_S["bilinear"])
    if task_kind == "product":
        return adapt + count * (DECODE_S_PER_GRID_PATCH + scale * per_kept * source.expected_kept_share())
    return adapt + count * (READ_S_PER_FOLDER + scale * FOLDER_PATCH_S.get(upsampling, per_kept))


# Memory a worker holds for one task: a product's decoded bands (uint16 at native resolution:
# 4 + 6/4 + 2/36 full-size planes, 1.3 GiB for a 10,980-pixel tile, plus the SCL) with half as
# much again for the rows in flight; a BigEarthNet task holds the rows of patches a block of them
# reads (patch_ingest.BLOCK's rows and one above and below: 5 rows of a 90-patch tile, ~0.2 GiB)
# and the outputs of the blocks it has made ahead (~0.1 GiB).
PATCH_TASK_BYTES = 512 << 20


def expected_bytes(task: "Task") -> int:
    if task.kind == "product":
        side = task.source.geocoding.size_10m
        return int(1.5 * (side * side * 2 * (4 + 6 / 4 + 2 / 36) + (side // 2) ** 2))
    return PATCH_TASK_BYTES


def clc_beside(folder: Path) -> list[Path]:
    """The CORINE rasters kept with a folder of products: ``*.tif`` beside them or in ``clc/``
    (as ``bigearth-sr synth`` writes them, and as the TFDS builder reads its manual_dir)."""
    return sorted(p for d in (folder, folder / "clc") if d.is_dir() for p in d.glob("*.tif"))


def expand_folders(inputs, cfg: BuildConfig) -> tuple[list[Path], list[str]]:
    """The inputs, each folder of Level-2A products (not itself a product, nor a BigEarthNet v1 or v2
    folder) standing for the products it holds, as ``tfds build --manual_dir`` takes such a folder;
    with a line per folder saying what it holds. Without --clc and --labels-json, the CORINE rasters
    kept with the products (``clc_beside``) label them, and the line says so (``cfg.clc`` is set)."""
    out, lines = [], []
    given = bool(cfg.clc or cfg.labels_json)  # the user's labels are used as given
    for inp in map(Path, inputs):
        found = (products_in(inp) if inp.is_dir() and not (inp / "MTD_MSIL2A.xml").exists()
                 and not bigearthnet_v2.is_v2_root(inp) and not bigearthnet_v1.is_archive_dir(inp) else [])
        if not found:
            out.append(inp)
            continue
        out.extend(found)
        zips = sum(p.suffix.lower() == ".zip" for p in found)
        line = (f"{inp}: {len(found)} Level-2A product(s) found ({len(found) - zips} .SAFE folder(s), {zips} "
                f".zip)")
        clc = clc_beside(inp)
        if clc and not given:
            cfg.clc = [*dict.fromkeys([*cfg.clc, *map(str, clc)])]
            line += f", labelled from the {len(clc)} CORINE raster(s) kept with them ({clc[0].name}" + \
                    (", ..." if len(clc) > 1 else "") + ")"
        lines.append(line)
    return out, lines


def plan_tasks(inputs, cfg: BuildConfig, labels: bool = True) -> tuple[list[Task], dict, dict]:
    """Open every input's metadata. An input that cannot be opened (or, in the BigEarthNet
    archive, a patch whose label JSON cannot be read) is returned as a failure, keyed by the
    input's name; the others are planned. Returns (tasks, failures, ignored): the last, what a
    BigEarthNet folder holds besides patches ({path: why}), for the manifest. ``labels=False``:
    BigEarthNet v1 folders are grouped by their names, no label JSON read (a plan's speed;
    ``bigearthnet_v1.group_by_tile_source``)."""
    tasks, failed, ignored = [], {}, {}
    for inp in inputs:
        inp = Path(inp)
        key = inp.name.removesuffix(".zip").removesuffix(".SAFE")
        try:
            v2 = bigearthnet_v2.is_v2_root(inp)
            if v2 or bigearthnet_v1.is_archive_dir(inp):
                if v2:
                    groups, bad, screened, skipped = bigearthnet_v2.group_by_product(inp)
                else:
                    (groups, bad, skipped), screened = bigearthnet_v1.group_by_tile_source(inp, labels), {}
                if bad and cfg.strict:
                    raise InputError(next(iter(bad)), next(iter(bad.values())))
                failed.update(bad)
                ignored.update(skipped)
                tasks.extend(Task(tid, "bigearthnet_v2" if v2 else "bigearthnet", folders, len(folders),
                                  expected_work("bigearthnet", folders, len(folders), cfg),
                                  screened.get(tid))
                             for tid, folders in groups.items())
                continue
            p = open_product(inp)
            tasks.append(Task(p.name, "product", p, p.patch_count,
                              expected_work("product", p, p.patch_count, cfg)))
        except (InputError, OSError) as e:
            if cfg.strict:
                raise
            failed[key] = str(e) if isinstance(e, InputError) else f"{inp}: cannot read ({e.strerror or e})"
    tasks = one_claim_per_name(tasks, failed)
    ids = [t.id for t in tasks]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(dup[0], f"the same product is given twice ({', '.join(dup)}): give each input once")
    return sorted(tasks, key=lambda t: t.id), failed, ignored


def one_claim_per_name(tasks: list[Task], failed: dict) -> list[Task]:
    """Tasks whose patches could take the names or the places of another's are refused
    (``failed``), so no two inputs become two rows of one patch: products of one acquisition
    (BigEarthNet names a patch by mission and acquisition time, not by processing baseline) keep
    the first by name; BigEarthNet v1 patch folders named after a product that is built too are
    refused, the product kept; BigEarthNet v2 patches of an acquisition a product or v1 folders
    give too are refused (v2 names its patches otherwise, but they are the same places)."""
    kept, owner = [], {}
    order = {"product": 0, "bigearthnet": 1, "bigearthnet_v2": 2}
    for t in sorted(tasks, key=lambda t: (order.get(t.kind, 3), t.id)):
        if t.kind == "product":
            prefix = t.source.prefix
            if prefix in owner and owner[prefix] != t.id:  # the same product twice: refused below, whole
                failed[t.id] = (f"{t.source.path}: its patches would be named {prefix}_<x>_<y>, as those of "
                                f"{owner[prefix]}, another processing of the same acquisition: not built (give one "
                                f"product per acquisition)")
                continue
            owner[prefix] = t.id
        elif t.kind == "bigearthnet":
            prefixes = {f.name.rsplit("_", 2)[0] for f in t.source}
            clash = sorted(prefixes & set(owner))
            if clash:
                failed[t.id] = (f"{t.source[0].parent}: its patch folders of {t.id} are named {clash[0]}_<x>_<y>, "
                                f"as the patches of the product {owner[clash[0]]} given too: not built (give the "
                                f"product or its BigEarthNet patches, not both)")
                continue
            for prefix in prefixes:
                owner.setdefault(prefix, f"BigEarthNet v1 {t.id}")
        else:  # v2: its product's acquisition, as v1 and products name it
            prefix = "_".join(t.id.split("_")[:3])
            if prefix in owner:
                failed[t.id] = (f"{t.source[0].parent}: BigEarthNet v2 patches of the acquisition {prefix}, which "
                                f"{owner[prefix]} gives too: not built (one source per acquisition: the same "
                                f"places would be two rows)")
                continue
        kept.append(t)
    return kept


def task_inputs(task: Task, cfg: BuildConfig, read: dict | None = None) -> dict:
    """Content digests of what this task reads besides the shared label sources: its product (or
    its patch folders) and, with --labels-json, the label JSONs of its patches. ``read``: the
    digests its build recorded as it read (``files.recording_reads``)."""
    if task.kind == "product":
        d = {"product": product_digest(task.source)}
        if cfg.labels_json:
            d["labels_json"] = JsonLabeler(cfg.labels_json).digest(task.source.prefix)
        return d
    folders = task.source
    h = hashlib.sha256()
    for folder in sorted(folders, key=lambda f: f.name):
        h.update(f"{folder.name}\0{content_digest(folder, read)}\n".encode())
        if task.kind == "bigearthnet_v2":  # its reference map and the parquet rows label it
            root = folder.parents[2]
            ref = root / bigearthnet_v2.MAPS_DIR / folder.parent.name / folder.name
            h.update((content_digest(ref, read) if ref.exists() else "missing").encode())
    d = {"patches": h.hexdigest()}
    if task.kind == "bigearthnet_v2":
        d["metadata"] = [content_digest(p, read) for p in shared_inputs(task)]
        d["screened"] = task.screened
    return d


def shared_inputs(task: Task) -> list[Path]:
    """Files a worker reads once for all its tasks (v2's metadata tables): digested before a
    task's build, whose recording of its own reads would not see them."""
    if task.kind != "bigearthnet_v2":
        return []
    root = task.source[0].parents[2]
    return [root / n for n in (bigearthnet_v2.METADATA, bigearthnet_v2.SCREENED) if (root / n).exists()]


def product_digest(product: Product) -> str:
    """Content digest of what the builder reads of a product: its metadata and the 13 band files
    it decodes (a zip: the whole file). Other files of the SAFE (TCI, AOT, the resampled copies
    of the 10 m bands, QI data) do not shape a part and are not read."""
    path = Path(product.path)
    if path.is_file():
        return content_digest(path)
    files = [path / "MTD_MSIL2A.xml", *sorted(path.glob("GRANULE/*/MTD_TL.xml")),
             *(Path(product.band_paths[b]) for b in sorted(product.band_paths))]
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(f"{f.relative_to(path).as_posix()}\0{content_digest(f)}\n".encode())
        except FileNotFoundError:
            raise InputError(f, "file is missing from the product") from None
        except OSError as e:
            raise InputError(f, f"cannot read ({e.strerror or e})") from None
    return h.hexdigest()


def task_fingerprint(task: Task, cfg: BuildConfig, read: dict | None = None) -> str:
    """A part is reused only under the same fingerprint: every input that shaped it (product or
    patches, label sources, options, method and weights) has the same content."""
    doc = {"config": cfg.fingerprint(), "inputs": task_inputs(task, cfg, read)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def parts_dir(cfg) -> Path:
    return Path(cfg.out_dir) / "parts"


def _marker(cfg, task_id) -> Path:
    return parts_dir(cfg) / f"{task_id}.json"


def done_result(cfg: BuildConfig, task: Task, fingerprint: str) -> dict | None:
    """The recorded result of a finished tile, if its part is intact and was built from the same
    inputs the same way."""
    rec = done_record(_marker(cfg, task.id), parts_dir(cfg) / f"{task.id}.h5", fingerprint)
    # a part recorded before the catalogue was kept is built again: its rows are not in the record
    return rec if rec is not None and "catalogue" in rec else None


def run_task(task: Task, cfg: BuildConfig, progress=None) -> dict:
    """Build one tile's part (or reuse it). Whatever goes wrong with this input is recorded
    against it and the build goes on (unless ``strict``); only the environment (a full disk)
    ends the build, as an EnvironmentFailure."""
    part = parts_dir(cfg) / f"{task.id}.h5"
    try:
        fingerprint = None
        if task.kind == "product" or _marker(cfg, task.id).exists():
            fingerprint = task_fingerprint(task, cfg)
            prev = done_result(cfg, task, fingerprint)
            if prev is not None:
                prev["resumed"] = True
                return prev
        part.parent.mkdir(parents=True, exist_ok=True)
        with recording_reads(digest_now=shared_inputs(task)) as read:
            if task.kind == "product":
                res = process_product(task.source, cfg, part, progress)
            elif task.kind == "bigearthnet_v2":
                res = bigearthnet_v2.process_product(task.id, task.source, cfg, part, progress, task.screened)
            else:
                res = bigearthnet_v1.process_tile_source(task.id, task.source, cfg, part, progress)
        # with nothing to reuse the inputs are digested after the build: the patch readers recorded
        # the digests of the bytes they used, so a patch folder is read once (a product's bands,
        # decoded by GDAL, are digested before, as a part must never describe newer inputs)
        fingerprint = fingerprint or task_fingerprint(task, cfg, read)
        res.update(task=task.id, status="ok", fingerprint=fingerprint, sha256=sha256_file(part))
        mark_done(_marker(cfg, task.id), part, fingerprint, res, sha256=res["sha256"])
    except EnvironmentFailure:
        raise
    except Exception as e:  # noqa: BLE001 - sorted below: the environment, or this input
        if is_disk_full(e):
            raise disk_full_error(part, e) from None
        if cfg.strict:
            raise
        if isinstance(e, (InputError, nom.UnknownClassError)):
            return {"task": task.id, "status": "failed", "error": str(e)}
        if isinstance(e, OSError):
            return {"task": task.id, "status": "failed", "error": f"{task.id}: cannot read ({e})"}
        return {"task": task.id, "status": "failed", "error": f"{task.id}: unexpected {type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}
    res["resumed"] = False
    return res
