"""What a build will take, known before it starts (``bigearth-sr build --dry-run``): the inputs
found, the patches expected per split, what screening will drop, the disk the archive, its parts
and the shards need against what is free, and the time on this machine, all from the inputs'
metadata (of a product's bands only SCL is decoded) and the per-patch costs measured in
``benchmarks/RESULTS.md``.

Products: a tile's patches are its grid (``Product.patch_count``), those kept are what screening
its SCL band keeps, as the build screens it (``products.scl_screening``; where the band cannot be
read, what the metadata's cloud, shadow, snow and no-data percentages leave:
``Product.expected_kept_share``), the split is the tile's (``products.tile_split``). BigEarthNet v1: the official lists say the
split and the screening; v2: its metadata tables.
"""
from __future__ import annotations

import time
from pathlib import Path

from bigearth.errors import InputError, OptionError
from bigearth.files import free_bytes, size_text

from .config import BuildConfig
from .tasks import Task, expand_folders, plan_tasks

# bytes per kept patch (benchmarks/RESULTS.md, the full synthetic tile: 1,951 MB for 5,465 patches
# in blosc-lz4; gzip and blosc2-zstd are smaller, none larger: the blosc-lz4 figure is used for
# the compressed ones, the raw arrays' size for none)
ARCHIVE_BYTES_PER_PATCH = 357_000
RAW_BYTES_PER_PATCH = 2 * (12 * 120 * 120 + 4 * 120 * 120 + 6 * 60 * 60 + 2 * 20 * 20) + 1_000
SHARD_BYTES_PER_PATCH = 510_000  # uncompressed .npy members, labels and metadata (RESULTS: the loaders' rows)


# what the plan's count may miss, said with it: products are screened by their SCL as the build
# screens them; patches without labels (outside the CORINE raster's data) and inputs that fail
# while built are not foreseen. Measured on the synthetic products and the v1/v2 fixtures (tests)
EXPECTED_ERROR = 0.15


def expected_per_split(tasks: list[Task], cfg: BuildConfig) -> tuple[dict[str, int], dict[str, int]]:
    """(patches expected per split, patches expected to be screened out, by reason). Products are
    screened by their SCL band as the build screens them (one band decoded per product, on every
    core), for ``--dry-run`` and the build's disk check alike, so the build refuses what the plan
    announces; one whose SCL cannot be read, by its metadata's percentages (its build names it)."""
    from . import bigearthnet_v1, bigearthnet_v2
    from .products import scl_screening, tile_split
    kept: dict[str, int] = {}
    screened: dict[str, int] = {}
    by_scl: dict[str, dict] = {}
    products = [t for t in tasks if t.kind == "product"]
    for tid, f in per_product(lambda p: scl_screening(p, cfg.thresholds), products).items():
        try:
            by_scl[tid] = f.result()
        except InputError:  # a band the build will name: the metadata's estimate stands for it
            pass

    def add(d, k, n):
        if n:
            d[k] = d.get(k, 0) + n

    lists = cfg.official_lists
    snow = bigearthnet_v1.read_list(lists, "snow") if lists else frozenset()
    cloud = bigearthnet_v1.read_list(lists, "cloud") if lists else frozenset()
    v2_rows: dict = {}  # one metadata table per v2 folder, not one per product of it
    for t in tasks:
        if t.kind == "product" and t.id in by_scl:
            counts = by_scl[t.id]
            add(kept, tile_split(t.source.tile, cfg.split_fractions), counts["kept"])
            for reason, n in counts.items():
                if reason != "kept":
                    add(screened, reason, n)
        elif t.kind == "product":
            share = t.source.expected_kept_share()
            n = round(t.count * share)
            add(kept, tile_split(t.source.tile, cfg.split_fractions), n)
            add(screened, "scl (cloud, shadow, snow, no data: from the metadata's percentages)", t.count - n)
        elif t.kind == "bigearthnet":
            for f in t.source:
                if f.name in snow:
                    add(screened, "snow_list", 1)
                elif f.name in cloud:
                    add(screened, "cloud_list", 1)
                else:
                    add(kept, bigearthnet_v1.official_split(lists, f.name), 1)
        else:  # v2: the split in the metadata table; its screened patches were never planned
            root = Path(t.source[0]).parents[2]
            if root not in v2_rows:
                v2_rows[root] = bigearthnet_v2.read_metadata(root)[0]
            rows = v2_rows[root]
            for f in t.source:
                add(kept, bigearthnet_v2.SPLIT_VALUES.get(str(rows.get(f.name, {}).get("split")), "none"), 1)
            for reason, n in (t.screened or {}).items():
                add(screened, reason, n)
    return kept, screened


def per_product(fn, products: list[Task]) -> dict:
    """``fn(product)`` for each product task, on every usable core (GDAL decodes outside the GIL):
    {task id: its finished future}."""
    if not products:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    from bigearth.distinfo import usable_cores
    with ThreadPoolExecutor(min(len(products), usable_cores())) as pool:  # waits for every one on leaving
        return {t.id: pool.submit(fn, t.source) for t in products}


def estimate(inputs, cfg: BuildConfig, workers: int | None = None) -> dict:
    """The plan of a build, from metadata only; see the module's docstring. Options the build
    would refuse are refused here too (``require_labels``)."""
    inputs, found = expand_folders(inputs, cfg)
    require_labels(named_products(inputs), cfg)
    tasks, failed, ignored = plan_tasks(inputs, cfg, labels=False)  # v1 by name: seconds for 590k folders
    require_labels([t.id for t in tasks if t.kind == "product"], cfg)
    # what the build would fail on, found before it: every band's header and last tile
    bad = {tid: f.result() for tid, f in per_product(band_problem, [t for t in tasks if t.kind == "product"]).items()}
    failed.update({k: v for k, v in bad.items() if v})
    tasks = [t for t in tasks if not bad.get(t.id)]
    return {**summarize(tasks, failed, ignored, cfg, workers), "folders": found}


def band_problem(product) -> str | None:
    """The first band of a product its build would fail on, as the build would name it, or None:
    each band file opened (a missing or 0-byte file, another type, size, CRS or geotransform) and
    its last tile decoded for one pixel (a truncated file ends before it; ~5 ms a band)."""
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    from .safe import open_band
    for band, path in product.band_paths.items():
        if not path.startswith("/vsi") and not Path(path).is_file():
            return f"{path}: file is missing from the product"
        try:
            with open_band(product, band) as ds:
                ds.read(1, window=Window(ds.width - 1, ds.height - 1, 1, 1))
        except InputError as e:
            return str(e)
        except RasterioIOError as e:
            return f"{path}: cannot decode ({e})"
    return None


def would_fail(plan: dict) -> list[str]:
    """Why the build this plan describes would fail, one reason each (empty: it would not): an
    input that cannot be read, a disk too small, or no patch to build."""
    why = []
    if plan["inputs"]["failed"]:
        why.append(f"{len(plan['inputs']['failed'])} input(s) would fail (listed above)")
    if plan["disk_refusal"]:
        why.append("the disk is too small")
    if not plan["patches"]:
        why.append("no patch would be built")
    return why


def summarize(tasks: list[Task], failed: dict, ignored: dict, cfg: BuildConfig, workers: int | None = None) -> dict:
    """The plan of planned ``tasks`` (``plan_tasks``'s result)."""
    from .engines import choose_workers
    t0 = time.perf_counter()
    kept, screened = expected_per_split(tasks, cfg)
    scl_s = time.perf_counter() - t0
    n = sum(kept.values())
    archive_bytes, build_bytes = disk_bytes(n, cfg)
    free = free_bytes(cfg.out_dir)
    n_workers, why = choose_workers(tasks, workers) if tasks else (1, "no task")
    work = sum(t.work for t in tasks)
    # the slowest worker's share: Algorithm 1 deals by expected work, so about work / workers,
    # but never less than the largest task
    seconds = max(work / max(1, n_workers), max((t.work for t in tasks), default=0.0))
    return {"inputs": {"products": sum(t.kind == "product" for t in tasks),
                       "bigearthnet_v1_acquisitions": sum(t.kind == "bigearthnet" for t in tasks),
                       "bigearthnet_v2_products": sum(t.kind == "bigearthnet_v2" for t in tasks),
                       "grid_patches_or_folders": sum(t.count for t in tasks),
                       "failed": failed, "ignored": len(ignored)},
            "upsampling": cfg.upsampling, "patches_per_split": kept, "patches": n, "screened": screened,
            "bytes": {"archive": archive_bytes, "build_peak": build_bytes, "shards": n * SHARD_BYTES_PER_PATCH,
                      "free": free},
            "disk_refusal": disk_shortfall(n, cfg, free),
            "expected_error": EXPECTED_ERROR, "scl_read_s": round(scl_s, 1),
            "workers": n_workers, "workers_why": why, "seconds": round(seconds, 1),
            "notes": option_notes(tasks, cfg)}


def disk_bytes(patches: int, cfg: BuildConfig) -> tuple[int, int]:
    """(archive bytes, the build's peak bytes) for ``patches`` kept patches: a copy merge holds
    the parts and the archive at once, a virtual one keeps the parts only."""
    archive_bytes = patches * (RAW_BYTES_PER_PATCH if cfg.compression == "none" else ARCHIVE_BYTES_PER_PATCH)
    return archive_bytes, archive_bytes * (2 if cfg.merge == "copy" else 1)


def check_disk(tasks: list[Task], cfg: BuildConfig) -> str | None:
    """Why the build of ``tasks`` cannot fit the free disk, or None (``disk_shortfall``)."""
    kept, _ = expected_per_split(tasks, cfg)  # what --dry-run announces, alike
    return disk_shortfall(sum(kept.values()), cfg, free_bytes(cfg.out_dir))


def disk_shortfall(patches: int, cfg: BuildConfig, free: int | None) -> str | None:
    """Why a build of ``patches`` kept patches cannot fit ``free`` bytes, or None (also when the
    free space cannot be known, ``free`` None: the write then says so if it fails): refused when what
    it still needs at its peak (less the parts a resumed build has already) is more than what is
    free; the estimate is of the build's own order (measured bytes per patch, the screening of the
    products' SCL bands). What the build refuses and what ``--dry-run`` announces, alike."""
    if free is None:
        return None
    out = Path(cfg.out_dir)
    made = sum(p.stat().st_size for p in (out / "parts").glob("*.h5")) if (out / "parts").is_dir() else 0
    need = disk_bytes(patches, cfg)[1] - made
    if need > free:
        return (f"the build needs about {size_text(need)} more at its peak (archive and parts of ~{patches} "
                f"patches) and {size_text(free)} is free there; free space, choose another --out, or --merge "
                f"virtual (no second copy); --dry-run shows the plan")
    return None


def named_products(inputs) -> list:
    """The inputs that are products by their names (``.SAFE``, ``.zip``): known before planning."""
    return [p for p in inputs if Path(p).name.endswith((".SAFE", ".zip"))]


def require_labels(products: list, cfg: BuildConfig) -> None:
    """Products are labelled from a CORINE raster or BigEarthNet label JSONs: without either every
    product would fail, one after the other, after its decoding; say so before any work."""
    if products and not cfg.clc and not cfg.labels_json:
        raise OptionError(f"--clc: {len(products)} Level-2A product(s) given ({Path(str(products[0])).name}"
                          f"{', ...' if len(products) > 1 else ''}) and no labels source: give a CORINE Land Cover "
                          f"raster (--clc FILE, or a folder of them) or BigEarthNet label JSONs (--labels-json DIR)")


def option_notes(tasks: list[Task], cfg: BuildConfig) -> list[str]:
    """What the options mean for these inputs that a user may not expect."""
    notes = []
    v1 = sum(t.count for t in tasks if t.kind == "bigearthnet")
    if v1 and not cfg.official_lists:
        notes.append(f"BigEarthNet v1 input ({v1} patch folders) without --official-lists: nothing is screened (the "
                     f"official seasonal-snow and cloud/shadow lists are not applied) and every patch is in split "
                     f"'none'; pass --official-lists DIR for the official train/validation/test splits and screening")
    notes += v2_pairing_notes(tasks)
    return notes


def v2_pairing_notes(tasks: list[Task]) -> list[str]:
    """BigEarthNet v2 patches whose metadata row has no ``s1_name`` (null): stored as '' (no
    Sentinel-1 patch paired), said once per table with the count and the first patch."""
    from . import bigearthnet_v2
    by_root: dict[Path, list[str]] = {}
    for t in tasks:
        if t.kind == "bigearthnet_v2":
            by_root.setdefault(Path(t.source[0]).parents[2], []).extend(f.name for f in t.source)
    notes = []
    for root, names in by_root.items():
        rows = bigearthnet_v2.read_metadata(root)[0]  # cached: the planning read it already
        unpaired = [n for n in names if n in rows and rows[n].get("s1_name") in (None, "")]
        if unpaired:
            notes.append(f"{root / bigearthnet_v2.METADATA}: {len(unpaired)} of {len(names)} patch(es) have no s1_name "
                         f"(e.g. {unpaired[0]}): they are stored with s1_name '' (no Sentinel-1 patch paired with them)")
    return notes
