"""``bigearth-sr show``: pictures of the data itself. Patches of an archive or of shards as RGB
and as a false colour of their 20 m bands, native beside bilinear beside the archive's
``data_super``, with their labels; and for a build, its catalogue as maps of the footprints by
status and by split with the drop reasons counted (``info --plot`` draws the same)."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from bigearth.errors import InputError, OptionError
from bigearth.pictures import rgb_image, stretch_limits
from bigearth import nomenclature as nom
from bigearth.record import BANDS_20M, BANDS_SR, BANDS_SUPER, RGB_INDEX, PatchRecord

# the 20 m false colour: SWIR 1, narrow NIR, red edge 1 (vegetation bright, soil and built-up
# mauve, water black): three bands no 10 m band stands in for, where super-resolution shows
FALSE_COLOUR = ("B11", "B8A", "B05")
MAX_PATCHES = 16
MAX_PRODUCTS = 16  # acquisitions drawn one panel each in the catalogue picture
STATUS_COLOURS = {"kept": "#2ca02c", "nodata": "#7f7f7f", "cloud": "#aec7e8", "cirrus": "#c5b0d5", "shadow": "#393b79",
                  "snow": "#17becf", "no_labels": "#bcbd22", "snow_list": "#9edae5", "cloud_list": "#dbdb8d",
                  "failed": "#d62728"}
SPLIT_COLOURS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#9467bd", "none": "#7f7f7f"}


# --------------------------------------------------------------------------- what is shown


def source_kind(source) -> tuple[str, Path]:
    """("archive", path) or ("shards", folder) for an archive, a build folder or a shards folder."""
    from dataset_builder.build import ARCHIVE_NAME
    from shards.index import INDEX_NAME
    source = Path(source)
    if source.is_dir():
        if (source / ARCHIVE_NAME).is_file():
            return "archive", source / ARCHIVE_NAME
        if (source / INDEX_NAME).is_file():
            return "shards", source
        raise InputError(source, f"is a folder with neither {ARCHIVE_NAME} (a build) nor index.json (shards)")
    if not source.exists():
        raise InputError(source, "no such archive or folder")
    if source.name == INDEX_NAME:
        return "shards", source.parent
    return "archive", source


def _choose(names: list[str], splits: list[str], wanted: list[str] | None, count: int, seed: int,
            split: str | None, where) -> list[int]:
    if wanted:
        at = {n: i for i, n in enumerate(names)}
        missing = [n for n in wanted if n not in at]
        if missing:
            raise InputError(where, f"holds no patch {missing[0]}" + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return [at[n] for n in wanted]
    pool = [i for i, s in enumerate(splits) if split is None or s == split]
    if not pool:
        raise InputError(where, f"holds no patch in split {split!r}")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(pool, size=min(count, len(pool)), replace=False).tolist())


def archive_records(path: Path, wanted, count: int, seed: int, split) -> list[PatchRecord]:
    from dataset_builder import archive
    archive.check(path)  # every reader's check: what shards or tfds refuse, show refuses
    with archive.reading(path) as f:
        names = list(f["name"].asstr()[:])
        splits = list(f["split"].asstr()[:])
        rows = _choose(names, splits, wanted, count, seed, split, path)
        digests = archive.stored_pixel_digests(f)
        out = []
        for i in rows:
            rec = archive.read_record(f, i)
            archive.check_pixels(path, rec.name, None if digests is None else digests[i],
                                 {k: getattr(rec, k) for k in archive.ARRAY_KEYS})
            out.append(rec)
    return out


def shard_records(folder: Path, wanted, count: int, seed: int, split) -> list[PatchRecord]:
    """The chosen samples of a shards folder, every member checked (``shards.sample.decode``)."""
    from shards.index import read_index, shard_entries
    from shards.sample import SampleError, decode
    index, base = read_index(folder)
    entries = [(s, e) for s in index["splits"] for e in shard_entries(index, base, s)]
    keys: list[tuple[str, Path]] = []
    for s, e in entries:
        with tarfile.open(e["url"]) as tf:
            keys += [(s, m.name.split(".", 1)[0]) for m in tf.getmembers() if m.name.endswith(".meta.json")]
    rows = _choose([k for _, k in keys], [s for s, _ in keys], wanted, count, seed, split, folder)
    chosen = {keys[i][1] for i in rows}
    found: dict[str, PatchRecord] = {}
    for s, e in entries:
        shard = e["url"]
        samples: dict[str, dict] = {}
        with tarfile.open(shard) as tf:
            for m in tf.getmembers():
                key, ext = m.name.split(".", 1)
                if key in chosen:
                    samples.setdefault(key, {"__key__": key})[ext] = tf.extractfile(m).read()
        for key, sample in samples.items():
            try:
                found[key] = decode(sample)
            except SampleError as err:
                raise InputError(shard, str(err)) from None
    return [found[keys[i][1]] for i in rows]


# --------------------------------------------------------------------------- the pictures


def patches_figure(records: list[PatchRecord], method: str = "as built"):
    """One row per patch: RGB at 10 m; the 20 m false colour native (nearest), bilinear, and as
    the archive holds it (DSen2 or the build's method); the label names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dataset_builder.interpolate import Bilinear

    up = Bilinear()
    native_rows = [BANDS_20M.index(b) for b in FALSE_COLOUR]
    super_rows = [BANDS_SUPER.index(b) for b in FALSE_COLOUR]
    sr_rows = [BANDS_SR.index(b) for b in FALSE_COLOUR]  # Bilinear() returns the bands super-resolution makes
    fig, axes = plt.subplots(len(records), 5, figsize=(17, 3.3 * len(records)), squeeze=False,
                             gridspec_kw={"width_ratios": (1, 1, 1, 1, 1.35)}, layout="constrained")
    titles = ("RGB (B04 B03 B02, 10 m)", f"{' '.join(FALSE_COLOUR)}: native 20 m", "bilinear to 10 m",
              f"data_super ({method})", "")
    for r, rec in enumerate(records):
        native = rec.data_20m[native_rows].astype(np.float32)
        bil = up(rec.data_10m, rec.data_20m, rec.data_60m)[sr_rows]
        sup = rec.data_super[super_rows].astype(np.float32)
        limits = stretch_limits(native)  # one stretch for the three: differences are the method's
        rgb = rec.data_super[RGB_INDEX].astype(np.float32)
        for c, img in enumerate((rgb_image(rgb), rgb_image(native, limits), rgb_image(bil, limits),
                                 rgb_image(sup, limits))):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        axes[r, 0].set_ylabel(rec.name, fontsize=7)
        text = axes[r, 4]
        text.axis("off")
        lines = [f"{rec.split}, {rec.tile}, {rec.date[:10]}", "", *nom.names_of(rec.classes)]
        text.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=7.5, transform=text.transAxes, wrap=True)
    return fig


def catalogue_figure(path: Path, max_products: int = MAX_PRODUCTS):
    """The catalogue of a build: where its acquisitions are (lon/lat, coloured by split), what it
    kept and dropped (patches per status), and each acquisition's grid with every patch
    coloured by its status (tiles 110 km wide are dots on a map of Europe, so each gets a panel)."""
    import geopandas as gpd
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cat = gpd.read_parquet(path)
    statuses = sorted(cat.status.unique(), key=lambda s: (s != "kept", s))
    colours = [STATUS_COLOURS.get(s, "#000000") for s in statuses]
    products = cat.groupby("product", sort=True)
    shown = sorted(products.groups, key=lambda k: -len(products.groups[k]))[:max_products]
    shown.sort()
    ncols = 4
    nrows = 1 + -(-len(shown) // ncols)
    fig = plt.figure(figsize=(17, 4.6 + 3.6 * (nrows - 1)), layout="constrained")
    grid = fig.add_gridspec(nrows, ncols, height_ratios=(1.25, *[1] * (nrows - 1)))
    overview, bars = fig.add_subplot(grid[0, :2]), fig.add_subplot(grid[0, 2:])
    # where: one point per acquisition, at the middle of its footprints' extent
    b = cat[cat.geometry.notna()].assign(split=lambda d: d.split.fillna("none"))
    if len(b):
        ext = b.bounds
        b = b.assign(cx=(ext.minx + ext.maxx) / 2, cy=(ext.miny + ext.maxy) / 2)
        where = b.groupby("product").agg(cx=("cx", "mean"), cy=("cy", "mean"), split=("split", "first"),
                                         tile=("tile", "first"), n=("name", "size"))
        for split, rows in where.groupby("split"):
            overview.scatter(rows.cx, rows.cy, s=30 + 200 * rows.n / where.n.max(), color=SPLIT_COLOURS.get(split, "#000"),
                             label=f"{split} ({len(rows)} acquisition{'s' * (len(rows) > 1)})", alpha=0.8, edgecolors="k", linewidths=0.5)
        for tile, rows in where.groupby("tile"):
            overview.annotate(tile, (rows.cx.mean(), rows.cy.mean()), textcoords="offset points", xytext=(6, 6), fontsize=8)
        overview.set_aspect(1 / max(np.cos(np.radians(where.cy.mean())), 0.1), adjustable="datalim")
        overview.legend(fontsize=8, loc="best")
    overview.set_xlabel("longitude (°)")
    overview.set_ylabel("latitude (°)")
    overview.grid(alpha=0.3)
    overview.set_title(f"{len(products)} acquisitions by split (marker size: patches)", fontsize=10)
    counts = cat.status.value_counts()
    order = sorted(counts.index, key=lambda s: (s != "kept", -counts[s]))[::-1]
    bars.barh(order, [counts[s] for s in order], color=[STATUS_COLOURS.get(s, "#000000") for s in order])
    for y, st in enumerate(order):
        bars.text(counts[st], y, f" {counts[st]:,} ({counts[st] / len(cat):.0%})", va="center", fontsize=8)
    bars.set_xlim(0, counts.max() * 1.25)
    bars.set_xlabel("grid patches")
    bars.set_title(f"what the build kept and dropped, of {len(cat):,} grid patches", fontsize=10)
    # each acquisition's grid: patch (x, y) at column x, row y, as the tile is laid out
    cmap = ListedColormap(colours)
    for k, product in enumerate(shown):
        rows = products.get_group(product)
        ax = fig.add_subplot(grid[1 + k // ncols, k % ncols])
        ok = rows.x.notna() & rows.y.notna()
        xs, ys = rows.x[ok].astype(int).to_numpy(), rows.y[ok].astype(int).to_numpy()
        img = np.full((ys.max() + 1 if len(ys) else 1, xs.max() + 1 if len(xs) else 1), np.nan)
        img[ys, xs] = [statuses.index(v) for v in rows.status[ok]]
        ax.imshow(img, cmap=cmap, vmin=-0.5, vmax=len(statuses) - 0.5, interpolation="nearest")
        split = rows.split.dropna().iloc[0] if rows.split.notna().any() else "none"
        for side in ax.spines.values():
            side.set_edgecolor(SPLIT_COLOURS.get(split, "#000"))
            side.set_linewidth(3)
        kept = int((rows.status == "kept").sum())
        date = rows.date.dropna().iloc[0].strftime("%Y-%m-%d") if rows.date.notna().any() else "?"
        ax.set_title(f"{rows.tile.iloc[0]} {date}: {kept:,} of {len(rows):,} kept ({split})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    more = f"; the {len(shown)} largest of {len(products)} acquisitions drawn" if len(shown) < len(products) else ""
    fig.suptitle(f"{path}: each acquisition's grid patches by status (colours as in the bars; frame: split){more}",
                 fontsize=11)
    return fig


def build_method(path: Path) -> str:
    """The super-resolution an archive's build ran (its recorded configuration), for the column's title."""
    import json

    from dataset_builder import archive
    with archive.reading(path) as f:
        cfg = f.attrs.get("build_config")
    try:
        cfg = json.loads(cfg)
        up = str(cfg.get("upsampling", "as built"))
        return f"{up}, {cfg['sr_model']} model" if up == "dsen2" and cfg.get("sr_model") else up
    except (TypeError, ValueError, AttributeError):
        return "as built"


def save(fig, out: Path) -> Path:
    from bigearth.files import atomic_path
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight", pad_inches=0.2)  # titles and names whole
    import matplotlib.pyplot as plt
    plt.close(fig)
    return out


def catalogue_of(archive_path: Path) -> Path | None:
    from dataset_builder.catalogue import CATALOGUE_NAME
    p = Path(archive_path).with_name(CATALOGUE_NAME)
    return p if p.is_file() else None


def main(args) -> int:
    if not args.out.lower().endswith(".png"):
        raise OptionError(f"--out: {args.out} is not a .png file name (the picture is a PNG)")
    wanted = [n for n in (args.names or "").split(",") if n]
    if not 1 <= (len(wanted) or args.count) <= MAX_PATCHES:
        raise OptionError(f"--names/--count: one picture shows 1 to {MAX_PATCHES} patches, not "
                          f"{len(wanted) or args.count}")
    kind, where = source_kind(args.source)
    records = (archive_records if kind == "archive" else shard_records)(where, wanted, args.count, args.seed,
                                                                         args.split)
    out = save(patches_figure(records, build_method(where) if kind == "archive" else "as built"), Path(args.out))
    print(f"{out}: {len(records)} patch(es) of {where} ({', '.join(r.name for r in records)})")
    if kind == "archive" and (cat := catalogue_of(where)) is not None:
        second = save(catalogue_figure(cat), Path(args.out).with_name(Path(args.out).stem + "-catalogue.png"))
        print(f"{second}: the catalogue {cat} by status and split, and the drop reasons")
    return 0


def catalogue_plot(archive_path, out) -> Path:
    """``info --plot``: the catalogue picture of the build that wrote ``archive_path``."""
    from dataset_builder.catalogue import CATALOGUE_NAME
    cat = catalogue_of(archive_path)
    if cat is None:
        raise InputError(archive_path, f"has no {CATALOGUE_NAME} beside it (built before builds wrote one, or moved "
                                       f"without it): rebuild to get one")
    return save(catalogue_figure(cat), out)
