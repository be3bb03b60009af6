"""Fault injection, as a table: (fault, command, expected exit code and message, what must
survive). Each class of issue 10 has rows here; adding a case is one line of ``CASES``.

A fault is a function that prepares a fresh folder (``ctx``) and breaks one thing in it; the
command is a template filled from ``ctx`` and run in-process through the package's own entry
points (``bigearth-sr``, the reference trainer and evaluator); the check of what must survive
is computed independently of the code under test (a fresh build, the files themselves)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from bigearth.errors import run_command
from bigearth.files import field_digests, folder_lock, sha256_file
from bigearth.record import BANDS_20M
from dataset_builder import archive
from dataset_builder.archive import FAILED_MANIFEST_NAME
from dataset_builder.build import ARCHIVE_NAME, MANIFEST_NAME

from .conftest import assert_same_archive, flip_byte, write_ben, write_lists

# --------------------------------------------------------------------------- running commands


def run(argv: list[str]) -> tuple[int, str]:
    """One command in this process: (exit code, everything it printed)."""
    import contextlib
    import io

    from bigearth_cli.cli import main as cli

    buf_out, buf_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
        try:
            if argv[0] == "read-shards":  # a user's pipeline: iterate a split of the shards
                rc = run_command(_read_all, *argv[1:])
            else:
                rc = cli(argv)
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, buf_out.getvalue() + buf_err.getvalue()


def _read_all(folder: str, split: str) -> int:
    import shards
    for _ in shards.load(folder, split, normalize=False, shuffle=0, rank=0, world=1):
        pass
    return 0


def run_limited(argv: list[str], max_file_bytes: int) -> tuple[int, str]:
    """``bigearth-sr`` in a child whose files may not grow past ``max_file_bytes``: the kernel
    then fails writes as on a full disk (EFBIG; the signal that would kill it is ignored)."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    r = subprocess.run([sys.executable, "-m", "bigearth_cli.cli", *argv], preexec_fn=limit, capture_output=True,
                       text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


# --------------------------------------------------------------------------- inputs


@dataclasses.dataclass
class Ctx:
    root: Path
    products: list  # copies of the synthetic products
    clc: list  # copies of their CORINE rasters
    built: Path  # the session's reference build (read only)
    fields: dict = dataclasses.field(default_factory=dict)
    expect: dict = dataclasses.field(default_factory=dict)  # what a check compares with
    cleanups: list = dataclasses.field(default_factory=list)  # run after the case (an unmount)

    @property
    def out(self) -> Path:
        return self.root / "out"

    def fmt(self, template: str) -> list[str]:
        f = {"products": " ".join(map(str, self.products)), "clc": " ".join(f"--clc {c}" for c in self.clc),
             "p0": str(self.products[0]),
             "out": str(self.out), "root": str(self.root), "archive": str(self.built / ARCHIVE_NAME), **self.fields}
        return shlex.split(template.format(**f))


def _ben(ctx: Ctx, n: int = 6) -> list[Path]:
    recs = list(archive.iter_records(ctx.built / ARCHIVE_NAME))
    prod = recs[0].product
    recs = [r for r in recs if r.product == prod][:n]
    folders = write_ben(ctx.root / "ben", recs, prod + ".SAFE")
    names = [f.name for f in folders]
    ctx.fields["ben"] = str(ctx.root / "ben")
    ctx.fields["lists"] = str(write_lists(ctx.root / "lists", {"train": names[:3], "test": names[3:]}))
    ctx.expect["names"] = names
    return folders


def _json_of(folder: Path) -> Path:
    return folder / f"{folder.name}_labels_metadata.json"


def _band(product: Path, band: str) -> Path:
    return next(product.rglob(f"*_{band}_*m.jp2"))


def _rewrite_tif(path: Path, array=None, **profile) -> None:
    with rasterio.open(path) as ds:
        prof, a = ds.profile, ds.read(1)
    a = a if array is None else array
    prof.update(dtype=a.dtype, **profile)
    path.unlink()
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(a, 1)


def _shards(ctx: Ctx, size: str = "400KiB", splits: str | None = None) -> Path:
    """Shards of the reference archive, written in this case's folder."""
    sdir = ctx.root / "shards"
    assert run(["shards", str(ctx.built / ARCHIVE_NAME), "--out", str(sdir), "--shard-size", size,
                "--no-progress", *(["--splits", splits] if splits else [])])[0] == 0
    ctx.fields["shards"] = str(sdir)
    return sdir


def _archive_copy(ctx: Ctx) -> Path:
    d = ctx.root / "arch"
    d.mkdir()
    shutil.copy(ctx.built / ARCHIVE_NAME, d / ARCHIVE_NAME)
    ctx.fields["arch"] = str(d / ARCHIVE_NAME)
    return d / ARCHIVE_NAME


# --------------------------------------------------------------------------- faults
# 1. stale work


def clc_changed_same_name(ctx):
    """A build, then the CORINE raster under the same name gets other classes."""
    assert run(ctx.fmt("build {products} {clc} --out {out} --no-progress"))[0] == 0
    ctx.expect["before"] = sha256_file(ctx.out / ARCHIVE_NAME)
    for c in ctx.clc:
        with rasterio.open(c) as ds:
            a = ds.read(1)
        _rewrite_tif(c, np.where(a == a.flat[0], a, a.flat[0]).astype(a.dtype))  # one class everywhere it can
    ctx.expect["fresh"] = ctx.root / "fresh"
    assert run(ctx.fmt("build {products} {clc} --out " + str(ctx.root / "fresh") + " --no-progress"))[0] == 0


def lists_changed(ctx):
    """A BigEarthNet build with official lists, then the lists move patches to other splits."""
    _ben(ctx)
    assert run(ctx.fmt("build {ben} --official-lists {lists} --out {out} --no-progress"))[0] == 0
    names = ctx.expect["names"]
    write_lists(Path(ctx.fields["lists"]), {"train": names[3:], "test": names[:3]})
    ctx.expect["splits"] = {**{n: "test" for n in names[:3]}, **{n: "train" for n in names[3:]}}


def product_band_changed(ctx):
    """A build, then one band of a product is replaced by other pixels (same name)."""
    assert run(ctx.fmt("build {products} {clc} --out {out} --no-progress"))[0] == 0
    ctx.expect["before"] = sha256_file(ctx.out / ARCHIVE_NAME)
    b = _band(ctx.products[0], "B04")
    with rasterio.open(b) as ds:
        a = ds.read(1)
    _rewrite_tif(b, (a // 2).astype(a.dtype))
    ctx.expect["fresh"] = ctx.root / "fresh"
    assert run(ctx.fmt("build {products} {clc} --out " + str(ctx.root / "fresh") + " --no-progress"))[0] == 0


def ben_copy_at_the_same_place(ctx):
    """A copy of a patch folder under another acquisition time (files renamed, one band changed),
    in the same tile source: it claims the original's place on the grid."""
    folders = _ben(ctx)
    src = folders[1]
    when = src.name.split("_")[2]
    other = when[:-2] + ("00" if when[-2:] != "00" else "01")
    dst = src.with_name(src.name.replace(when, other))
    shutil.copytree(src, dst)
    for f in list(dst.iterdir()):
        f.rename(dst / f.name.replace(src.name, dst.name))
    band = dst / f"{dst.name}_B11.tif"
    with rasterio.open(band) as ds:
        a = ds.read(1)
    _rewrite_tif(band, (a // 2 + 1).astype(a.dtype))
    ctx.expect.update(copy=dst.name, original=src)


def one_row_per_name_the_original_kept(ctx):
    recs = {r.name: r for r in archive.iter_records(ctx.out / ARCHIVE_NAME)}
    names = [r.name for r in archive.iter_records(ctx.out / ARCHIVE_NAME)]
    assert len(names) == len(set(names)) and sorted(names) == sorted(ctx.expect["names"])
    original = ctx.expect["original"]  # the kept row holds the original's pixels, not the copy's
    with rasterio.open(original / f"{original.name}_B11.tif") as ds:
        np.testing.assert_array_equal(recs[original.name].data_20m[BANDS_20M.index("B11")], ds.read(1))
    failed = json.loads((ctx.out / MANIFEST_NAME).read_text())["tiles_failed"]
    assert list(failed) == [ctx.expect["copy"]]


def product_twice_processed(ctx):
    """Two processings (baselines) of one acquisition: their patches would share names."""
    p = ctx.products[0]
    twin = p.with_name(p.name.replace("_N0", "_N9", 1))
    assert twin != p
    shutil.copytree(p, twin)
    mtd = twin / "MTD_MSIL2A.xml"
    mtd.write_text(mtd.read_text().replace(p.name.removesuffix(".SAFE"), twin.name.removesuffix(".SAFE")))
    ctx.products.append(twin)
    ctx.expect["twin"] = twin.name.removesuffix(".SAFE")


def one_row_per_name_twin_refused(ctx):
    names = [r.name for r in archive.iter_records(ctx.out / ARCHIVE_NAME)]
    assert len(names) == len(set(names))
    assert list(json.loads((ctx.out / MANIFEST_NAME).read_text())["tiles_failed"]) == [ctx.expect["twin"]]


def ben_band_a_fifo(ctx):
    """A named pipe where a patch's band should be: reading it would wait for a writer forever."""
    folders = _ben(ctx)
    band = folders[2] / f"{folders[2].name}_B11.tif"
    band.unlink()
    os.mkfifo(band)
    ctx.expect.update(bad=folders[2].name)


def product_band_a_fifo(ctx):
    band = _band(ctx.products[1], "B11")
    band.unlink()
    os.mkfifo(band)
    ctx.expect.update(bad=ctx.products[1].name.split("_")[5])


def clc_folder_with_a_fifo(ctx):
    folder = ctx.root / "clc"
    folder.mkdir()
    for c in ctx.clc:
        shutil.copy(c, folder / c.name)
    os.mkfifo(folder / "CLC_zz.tif")
    ctx.fields["clcdir"] = str(folder)


def clc_of_one_tile_a_fifo(ctx):
    """A --clc folder where one tile's CORINE raster is a FIFO: that tile fails naming the FIFO (not
    the intact raster beside it), the others are built."""
    folder = ctx.root / "clc"
    folder.mkdir()
    for c in ctx.clc:
        shutil.copy(c, folder / c.name)
    tile = ctx.products[1].name.split("_")[5]
    fifo = next(folder.glob(f"CLC_{tile}*.tif"))
    fifo.unlink()
    os.mkfifo(fifo)
    ctx.fields.update(clcdir=str(folder), fifo=fifo.name)
    ctx.expect.update(bad=tile)


def ben_empty_labels(ctx):
    """A v1 label JSON with "labels": [] (a patch no class covers): dropped as no_labels, counted."""
    folders = _ben(ctx)
    j = _json_of(folders[3])
    meta = json.loads(j.read_text())
    meta["labels"] = []
    j.write_text(json.dumps(meta))
    ctx.expect["empty"] = folders[3].name


def empty_labels_dropped_and_counted(ctx):
    m = _manifest(ctx)
    names = [r.name for r in archive.iter_records(ctx.out / ARCHIVE_NAME)]
    assert ctx.expect["empty"] not in names and len(names) == len(ctx.expect["names"]) - 1
    assert m["dropped"]["no_labels"] == 1 and not m["tiles_failed"]


def product_and_its_ben_patches(ctx):
    """A product and BigEarthNet v1 patch folders cut from it, in one build."""
    _ben(ctx)


def product_kept_ben_refused(ctx):
    names = [r.name for r in archive.iter_records(ctx.out / ARCHIVE_NAME)]
    assert len(names) == len(set(names))
    failed = json.loads((ctx.out / MANIFEST_NAME).read_text())["tiles_failed"]
    assert len(failed) == 1 and "as the patches of the product" in next(iter(failed.values()))


def ben_band_changed(ctx):
    """A BigEarthNet build, then one patch's band gets other pixels (same name, same size): the
    patch folders are digested from the bytes the build read, after it, so this must show."""
    folders = _ben(ctx)
    assert run(ctx.fmt(BEN))[0] == 0
    ctx.expect["before"] = sha256_file(ctx.out / ARCHIVE_NAME)
    band = folders[2] / f"{folders[2].name}_B11.tif"
    size = band.stat().st_size
    with rasterio.open(band) as ds:
        a = ds.read(1)
    _rewrite_tif(band, (a // 2 + 1).astype(a.dtype))
    assert band.stat().st_size == size
    ctx.expect["fresh"] = ctx.root / "fresh"
    assert run(ctx.fmt("build {ben} --out " + str(ctx.root / "fresh") + " --no-progress"))[0] == 0


def ben_band_changed_during_the_build(ctx):
    """A band is rewritten while the build runs, after the build read it: the part describes the
    bytes it was built from, so the next build sees the change and rebuilds."""
    from dataset_builder import bigearthnet_v1

    folders = _ben(ctx)
    band = folders[0] / f"{folders[0].name}_B11.tif"
    real = bigearthnet_v1.read_patch

    def read_then_change(folder):
        p = real(folder)
        if folder == folders[0]:
            _rewrite_tif(band, (p["bands"]["B11"] // 2 + 1).astype(np.uint16))
        return p

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bigearthnet_v1, "read_patch", read_then_change)
        assert run(ctx.fmt(BEN))[0] == 0  # in this process (one worker), so the patched reader runs
    ctx.expect["before"] = sha256_file(ctx.out / ARCHIVE_NAME)
    ctx.expect["fresh"] = ctx.root / "fresh"
    assert run(ctx.fmt("build {ben} --out " + str(ctx.root / "fresh") + " --no-progress"))[0] == 0


def resharded_smaller(ctx):
    """Shards written with one size, then again into the same folder with another."""
    _shards(ctx, "300KiB")
    ctx.expect["old"] = sorted(p.name for p in (ctx.root / "shards").glob("*.tar"))


def finished_shard_corrupted(ctx):
    """Shards written, then one finished shard damaged; the same command is run again."""
    sdir = _shards(ctx)
    victim = sorted(sdir.glob("*.tar"))[0]
    data = bytearray(victim.read_bytes())
    data[2000] ^= 0xFF
    victim.write_bytes(bytes(data))


def all_inputs_fail_after_a_build(ctx):
    """A good build, then a rebuild in which every input is broken."""
    assert run(ctx.fmt("build {products} {clc} --out {out} --no-progress"))[0] == 0
    for p in ctx.products:
        (p / "MTD_MSIL2A.xml").write_text("<broken")


# 2. one bad input among several (products: each fault breaks the second product, T29UPU)


def _second(ctx) -> Path:
    ctx.expect.update(bad="T29UPU")
    return ctx.products[1]


def band_truncated(ctx):
    f = _band(_second(ctx), "B03")
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])


def band_garbage(ctx):
    f = _band(_second(ctx), "B11")
    data = bytearray(f.read_bytes())
    data[200:4000] = bytes(3800)
    f.write_bytes(bytes(data))


def band_missing(ctx):
    _band(_second(ctx), "B8A").unlink()


def band_wrong_size(ctx):
    f = _band(_second(ctx), "B05")
    with rasterio.open(f) as ds:
        a = ds.read(1)
    _rewrite_tif(f, a[:-6, :-6].copy(), width=a.shape[1] - 6, height=a.shape[0] - 6)


def band_wrong_crs(ctx):
    _rewrite_tif(_band(_second(ctx), "B09"), crs="EPSG:32632")


def mtd_malformed(ctx):
    f = _second(ctx) / "MTD_MSIL2A.xml"
    f.write_text(f.read_text()[:500])


def tile_mtd_not_square(ctx):
    f = next(_second(ctx).rglob("MTD_TL.xml"))
    f.write_text(re.sub(r"<NROWS>\d+</NROWS>", "<NROWS>241</NROWS>", f.read_text(), count=1))


def mtd_image_entry_missing(ctx):
    f = _second(ctx) / "MTD_MSIL2A.xml"
    f.write_text(re.sub(r"\s*<IMAGE_FILE>[^<]*_B12_20m</IMAGE_FILE>", "", f.read_text()))


def clc_unknown_code(ctx):
    c = next(c for c in ctx.clc if "T29UPU" in c.name)
    with rasterio.open(c) as ds:
        a = ds.read(1)
    a[5, 5] = 777
    _rewrite_tif(c, a)
    _second(ctx)


def clc_missing_for_a_tile(ctx):
    next(c for c in ctx.clc if "T29UPU" in c.name).unlink()
    ctx.clc = [c for c in ctx.clc if c.exists()]
    _second(ctx)


# 2. one bad input among several: BigEarthNet patches, CORINE rasters, metadata


def ben_unknown_class(ctx):
    folders = _ben(ctx)
    j = _json_of(folders[1])
    meta = json.loads(j.read_text())
    meta["labels"] = ["Mixed forrest"]
    j.write_text(json.dumps(meta))
    ctx.expect.update(bad=folders[1].name)


def ben_malformed_json(ctx):
    folders = _ben(ctx)
    _json_of(folders[2]).write_text("{not json")
    ctx.expect.update(bad=folders[2].name)


def ben_files_do_not_match_folder(ctx):
    folders = _ben(ctx)
    for f in list(folders[0].iterdir()):  # files renamed to another patch's name
        f.rename(f.with_name(f.name.replace(folders[0].name, folders[0].name + "0")))
    ctx.expect.update(bad=folders[0].name)


def clc_garbage_one_of_several(ctx):
    """One of the CORINE rasters is garbage: the product it covers fails, the others build."""
    bad = next(c for c in ctx.clc if "T29UPU" in c.name)
    bad.write_bytes(b"II*\x00" + os.urandom(3000))
    ctx.expect.update(bad="T29UPU", file=bad.name)


def clc_two_over_one_tile(ctx):
    """A second CORINE raster over one tile, of another single class: which one labels the tile
    must not depend on the file names' order."""
    src = next(c for c in ctx.clc if "T29UPU" in c.name)
    with rasterio.open(src) as ds:
        a = ds.read(1)
    other = ctx.root / ("A_" + src.name)  # sorts before the original
    shutil.copy(src, other)
    _rewrite_tif(other, np.full_like(a, a.max()))
    ctx.clc.append(other)
    ctx.expect.update(bad="T29UPU", file=other.name)


def clc_truncated_one_of_several(ctx):
    bad = next(c for c in ctx.clc if "T33UUP" in c.name)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    ctx.expect.update(bad="T33UUP", file=bad.name)


def _mtd_field(value):
    def fault(ctx):
        mtd = ctx.products[1] / "MTD_MSIL2A.xml"
        text = re.sub(r"(<BOA_QUANTIFICATION_VALUE[^>]*>)[^<]*(<)", rf"\g<1>{value}\g<2>", mtd.read_text())
        mtd.write_text(text)
        ctx.expect.update(bad=ctx.products[1].name.split("_")[5], file="MTD_MSIL2A.xml")
    fault.__name__ = f"quantification_{value}"
    return fault


# 3. readers check what they read


def ben_band_float32(ctx):
    folders = _ben(ctx)
    b = folders[1] / f"{folders[1].name}_B02.tif"
    with rasterio.open(b) as ds:
        a = ds.read(1)
    _rewrite_tif(b, a.astype(np.float32))
    ctx.expect.update(bad=folders[1].name, file=b.name)


def ben_band_shifted(ctx):
    folders = _ben(ctx)
    b = folders[2] / f"{folders[2].name}_B05.tif"
    with rasterio.open(b) as ds:
        t = ds.transform
    _rewrite_tif(b, transform=from_origin(t.c + 1200, t.f, 20, 20))
    ctx.expect.update(bad=folders[2].name, file=b.name)


def ben_coordinates_not_numbers(ctx):
    folders = _ben(ctx)
    j = _json_of(folders[3])
    meta = json.loads(j.read_text())
    meta["coordinates"]["ulx"] = "somewhere"
    j.write_text(json.dumps(meta))
    ctx.expect.update(bad=folders[3].name, file=j.name)


def product_band_uint8(ctx):
    b = _band(ctx.products[0], "B11")
    with rasterio.open(b) as ds:
        a = ds.read(1)
    _rewrite_tif(b, (a // 256).astype(np.uint8))
    ctx.expect.update(bad=ctx.products[0].name.split("_")[5], file=b.name)


# 4. the environment


def nothing(ctx):
    pass


def out_is_a_file(ctx):
    (ctx.root / "plain").write_text("a file, not a folder")
    ctx.fields["out"] = str(ctx.root / "plain" / "out")


def out_locked(ctx):
    """Another run holds the output folder (its lock is held by this test while the command runs)."""
    ctx.expect["lock"] = ctx.out


def shards_and_out_locked(ctx):
    """Shards to train on, and another run holding the output folder."""
    _shards(ctx)
    ctx.expect["lock"] = ctx.out


def dead_runs_temporaries(ctx):
    """Temporaries in the output that runs killed before (SIGKILL, a lost node) left, beside one of a
    live process of this host and one of another host (issue 33: every rerun clears the dead runs'
    and never a live run's)."""
    import socket

    from bigearth.files import temporary_name
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "300"])
    ctx.cleanups.append(lambda: (live.kill(), live.wait()))
    (ctx.out / "parts").mkdir(parents=True)
    gone = [ctx.out / temporary_name("bigearth_sr.h5", dead.pid), ctx.out / "parts" / temporary_name("T.h5", dead.pid)]
    kept = [ctx.out / temporary_name("manifest.json", live.pid),
            ctx.out / f".bigearth_sr.h5.{dead.pid}@not-{socket.gethostname()}.tmp"]
    for q in gone + kept:
        q.write_bytes(b"partial")
    ctx.expect["gone"], ctx.expect["kept"] = gone, kept


# 6. unclear before


def folder_of_products(ctx):
    """The folder holding the products, given as it lies (their CORINE rasters in its clc/), as
    tfds build's manual_dir: taken for its products, labelled from its rasters."""
    ctx.fields["parent"] = str(ctx.products[0].parent)
    (ctx.products[0].parent / "clc").mkdir()
    for c in ctx.clc:
        shutil.copy(c, ctx.products[0].parent / "clc" / c.name)


def index_of_another_build(ctx):
    """Shards of two builds (other seeds); one folder gets the other's index."""
    _shards(ctx)
    other = ctx.root / "other"
    assert run(["shards", str(ctx.built / ARCHIVE_NAME), "--out", str(other), "--shard-size", "400KiB",
                "--shard-seed", "7", "--no-progress"])[0] == 0
    shutil.copy(other / "index.json", ctx.root / "shards" / "index.json")


def shard_of_another_build(ctx):
    """One train shard replaced by the same-named shard of another build of the same products
    (another compression): the same size and first key, every CRC valid, the index untouched."""
    sdir = _shards(ctx)
    other = ctx.root / "other"
    assert run(["build", *map(str, ctx.products), *[a for c in ctx.clc for a in ("--clc", str(c))], "--out",
                str(other), "--upsampling", "bilinear", "--compression", "lzf", "--no-progress"])[0] == 0
    assert run(["shards", str(other / ARCHIVE_NAME), "--out", str(other / "shards"), "--shard-size", "400KiB",
                "--no-progress"])[0] == 0
    entry = json.loads((sdir / "index.json").read_text())["splits"]["train"]["shards"][0]
    theirs = json.loads((other / "shards" / "index.json").read_text())["splits"]["train"]["shards"][0]
    assert (theirs["file"], theirs["bytes"], theirs["first_key"]) == (entry["file"], entry["bytes"], entry["first_key"])
    shutil.copy(other / "shards" / entry["file"], sdir / entry["file"])
    ctx.fields["run"] = str(ctx.root / "run")


def archive_damaged(ctx):
    path = _archive_copy(ctx)
    with h5py.File(path, "r") as f:
        ds = f["data_super"]
        offset = ds.id.get_chunk_info(3).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 10)
        fh.write(os.urandom(2000))


def archive_not_hdf5(ctx):
    path = _archive_copy(ctx)
    path.write_bytes(b"not an archive" * 100)


def _checkpoint(ctx, state) -> Path:
    d = ctx.root / "run"
    d.mkdir(exist_ok=True)
    torch.save(state, d / "checkpoint.pt")
    ctx.fields["run"] = str(d)
    ctx.expect["sha"] = sha256_file(d / "checkpoint.pt")
    return d / "checkpoint.pt"


def checkpoint_truncated(ctx):
    _shards(ctx)
    ck = _checkpoint(ctx, {"model": {"w": torch.zeros(3)}, "epoch": 1, "args": {}, "history": []})
    ck.write_bytes(ck.read_bytes()[:200])
    ctx.expect["sha"] = sha256_file(ck)


def checkpoint_other_variant(ctx):
    _shards(ctx)
    _checkpoint(ctx, {"model": {}, "optimizer": {}, "epoch": 1, "history": [],
                      "args": {"variant": "rgb", "labels": 19, "arch": "resnet18", "layers": "1,1,1,1"}})


def checkpoint_other_data(ctx):
    """A checkpoint of the same model, trained on shards of another archive."""
    _shards(ctx)
    _checkpoint(ctx, {"model": {}, "optimizer": {}, "epoch": 1, "history": [],
                      "args": {"variant": "super", "labels": 43, "arch": "resnet18", "layers": "1,1,1,1"},
                      "data": {"archive_sha256": "0" * 64, "train_split": "train", "seed": 0}})


def checkpoint_with_code(ctx):
    """A checkpoint someone else wrote, carrying a pickled callable."""
    _shards(ctx)
    _checkpoint(ctx, {"model": {}, "epoch": 1, "history": [], "args": {"variant": "super"}, "hook": os.system})


def shards_without_split(ctx):
    _shards(ctx, splits="train")
    ctx.fields["run"] = str(ctx.root / "run")


def shards_of_every_split(ctx):
    _shards(ctx)
    ctx.fields["run"] = str(ctx.root / "run")


# 9. issue 20, second round: weights, reBEN v1 folders, archives on their own, shard indexes, bounds,
# one-line errors (reBEN v2's strictness is tabled in test_bigearthnet_v2.py, on its fixture)


def _bundle(ctx, change=None, name="dsen2_bad.npz") -> Path:
    """The shipped weights bundle, one entry changed by ``change(dict of arrays)``."""
    from dataset_builder.sr.weights import DEFAULT
    with np.load(DEFAULT, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if change is not None:
        change(arrays)
    path = ctx.root / name
    np.savez(path, **arrays)
    ctx.fields["weights"] = str(path)
    return path


def _first_tensor(arrays) -> str:
    return next(k for k in sorted(arrays) if k != "meta" and arrays[k].ndim == 4)


def weights_nan(ctx):
    def change(a):
        k = _first_tensor(a)
        a[k] = a[k].copy()
        a[k].flat[7] = np.nan
    _bundle(ctx, change)


def weights_wrong_shape(ctx):
    def change(a):
        k = _first_tensor(a)
        a[k] = a[k][..., :-1]
    _bundle(ctx, change)


def ben_symlink_loop(ctx):
    """A link that loops, inside one patch folder: the tile's other patches, and this one, still build."""
    folders = _ben(ctx)
    (folders[1] / "loop").symlink_to("loop")


def all_ben_built(ctx):
    names = [r.name for r in archive.iter_records(ctx.out / ARCHIVE_NAME)]
    assert sorted(names) == sorted(ctx.expect["names"])


def sr_crops(ctx):
    """Two MAT/HDF5 crops: one constant, one with a NaN pixel."""
    rng = np.random.default_rng(0)
    for name, fill in (("S2A_MSIL2A_20200101T000000_1_1.h5", "constant"), ("S2A_MSIL2A_20200102T000000_1_1.h5", "nan")):
        with h5py.File(ctx.root / name, "w") as f:
            for key, n, side in (("im10", 4, 96), ("im20", 6, 48), ("im60", 2, 16)):
                a = (np.full((n, side, side), 1000.0) if fill == "constant"
                     else rng.uniform(100, 3000, (n, side, side))).astype(np.float32)
                if fill == "nan" and key == "im20":
                    a[0, 3, 3] = np.nan
                f[key] = a
        ctx.fields[fill] = str(ctx.root / name)


def no_checkpoint_written(ctx):
    assert not list(ctx.out.glob("checkpoint_*.pt"))


def name_too_long(ctx):
    ctx.fields["long"] = str(ctx.root / ("a" * 300))


def virtual_archive_parts_gone(ctx):
    """A --merge virtual archive whose parts/ folder was not kept beside it."""
    v = ctx.root / "v"
    assert run(ctx.fmt(BUILD.replace("{out}", str(v)) + " --merge virtual --upsampling bilinear"))[0] == 0
    shutil.rmtree(v / "parts")
    ctx.fields["varch"] = str(v / ARCHIVE_NAME)


def weights_bit_flipped(ctx):
    """One bit flipped inside a tensor of the bundle: zip's CRC-32 catches it, and the file is named."""
    path = _bundle(ctx)
    flip_byte(path, path.stat().st_size // 2)


def weights_text(ctx):
    path = ctx.root / "weights.npz"
    path.write_text("these are not weights\n")
    ctx.fields["weights"] = str(path)


SR_TINY = "--nets 2 --blocks 1 --features 8 --steps-per-epoch 2 --batch2 4 --no-progress"


def sr_checkpoint_nan(ctx):
    """sr-train wrote a checkpoint; one of its network tensors is then NaN (same fingerprint)."""
    run_dir = ctx.root / "srrun"
    ctx.fields["srrun"] = str(run_dir)
    assert run(ctx.fmt("sr-train {p0} --out {srrun} --epochs2 1 " + SR_TINY))[0] == 0
    ck_path = run_dir / "checkpoint_2x.pt"
    ck = torch.load(ck_path, weights_only=True)
    key = sorted(ck["net"])[0]
    ck["net"][key] = ck["net"][key].clone().fill_(float("nan"))
    torch.save(ck, ck_path)
    ctx.fields["run"] = str(run_dir)
    ctx.expect["sha"] = sha256_file(ck_path)
    ctx.expect["checkpoint"] = ck_path


def ben_misnamed_folder(ctx):
    """A patch folder renamed so that its name no longer follows BigEarthNet's (its files keep it)."""
    folders = _ben(ctx)
    folders[1].rename(folders[1].with_name(folders[1].name + "_copy"))
    ctx.expect.update(bad=folders[1].name)


def ben_stray_entries(ctx):
    """A README and a notes folder among the patch folders: not patches, not errors, but listed."""
    _ben(ctx)
    ben = Path(ctx.fields["ben"])
    (ben / "README.txt").write_text("downloaded 2019")
    (ben / "notes").mkdir()
    ctx.expect["ignored"] = {str(ben / "README.txt"): "a file", str(ben / "notes"): "without patch files"}


def ben_stray_files_in_a_patch(ctx):
    """A note, a link and a sub-folder inside one patch folder: the patch is built, and each of
    them is accounted for under inputs_ignored."""
    folders = _ben(ctx)
    f = folders[2]
    (f / "notes.txt").write_text("checked by hand")
    (f / "elsewhere").symlink_to(ctx.root)
    (f / "old").mkdir()
    ctx.expect["ignored"] = {str(f / "notes.txt"): "a file in a patch folder", str(f / "elsewhere"): "a link in a",
                             str(f / "old"): "a folder in a patch folder"}


# issue 36: inputs bounded before they are parsed (the memory each costs: test_hostile_inputs_are_bounded)


def ben_label_json_deep(ctx):
    """A label JSON nested 15,000 levels deep in 30 kB (Python's parser recursed into RecursionError)."""
    folders = _ben(ctx)
    _json_of(folders[1]).write_text("[" * 15_000 + "]" * 15_000)
    ctx.expect.update(bad=folders[1].name)


def ben_label_json_huge(ctx):
    """The issue's label JSON: 100,000 levels, 200 kB."""
    folders = _ben(ctx)
    _json_of(folders[1]).write_text("[" * 100_000 + "]" * 100_000)
    ctx.expect.update(bad=folders[1].name)


def _declare_size(tif: Path, width: int, height: int) -> None:
    """A GeoTIFF's ImageWidth and ImageLength rewritten in place as LONGs (the pixels stay 120 x 120)."""
    import struct

    import tifffile
    with tifffile.TiffFile(tif) as t:
        assert not t.is_bigtiff and t.byteorder == "<"
        entries = {n: t.pages.first.tags[n].offset for n in ("ImageWidth", "ImageLength")}
    with open(tif, "r+b") as fh:
        for name, value in (("ImageWidth", width), ("ImageLength", height)):
            fh.seek(entries[name] + 2)
            fh.write(struct.pack("<HII", 4, 1, value))  # type LONG, count 1, the value


def ben_band_declares_10_gigapixels(ctx):
    """A 29 kB band file whose header declares 100,000 x 100,000 pixels (20 GB if decoded)."""
    folders = _ben(ctx)
    _declare_size(folders[1] / f"{folders[1].name}_B02.tif", 100_000, 100_000)
    ctx.expect.update(bad=folders[1].name)


def v2_parquet_of_ten_million_rows(ctx):
    """A BigEarthNet v2 folder whose metadata.parquet declares 10 million rows, beside the products."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    root = ctx.root / "v2"
    (root / "BigEarthNet-S2").mkdir(parents=True)
    pq.write_table(pa.table({"patch_id": pa.array(["x"] * 10_000_000)}), root / "metadata.parquet")
    ctx.fields["v2"] = str(root)
    ctx.expect.update(bad="v2")


def shard_meta_byte_changed(ctx):
    """One letter of a sample's product name changed in its meta.json, in the tar (still valid
    JSON; tar checksums cover headers only)."""
    import tarfile
    sdir = _shards(ctx)
    index = json.loads((sdir / "index.json").read_text())
    tar = sdir / index["splits"]["train"]["shards"][0]["file"]
    with tarfile.open(tar) as tf:
        m = next(m for m in tf.getmembers() if m.name.endswith(".meta.json"))
        doc = tf.extractfile(m).read()
    start = m.offset_data + doc.index(b'"product": "') + len(b'"product": "')
    with open(tar, "r+b") as fh:
        fh.seek(start)
        c = fh.read(1)
        fh.seek(start)
        fh.write(b"X" if c != b"X" else b"Y")
    ctx.fields["run"] = str(ctx.root / "run")


def _trained_checkpoint(ctx, change) -> None:
    """The reference run's checkpoint (one epoch), ``change(state)`` applied."""
    _shards(ctx)
    run_dir = ctx.root / "run"
    assert run(ctx.fmt(TRAIN.replace("--epochs 2", "--epochs 1").replace("{run}", str(run_dir))))[0] == 0
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    change(state)
    _checkpoint(ctx, state)


def checkpoint_nan_weights(ctx):
    """A trained run's checkpoint with one weight set to NaN."""
    _trained_checkpoint(ctx, lambda s: s["model"]["fc.1.weight"].view(-1)[0].fill_(float("nan")))


def checkpoint_unknown_arch(ctx):
    _trained_checkpoint(ctx, lambda s: s["args"].update(arch="resnet9000"))


def _epoch(value):
    return lambda ctx: _trained_checkpoint(ctx, lambda s: s.update(epoch=value))


checkpoint_epoch_1e9, checkpoint_epoch_negative, checkpoint_epoch_text = _epoch(10 ** 9), _epoch(-5), _epoch("x")
checkpoint_epoch_1e9.__name__, checkpoint_epoch_negative.__name__, checkpoint_epoch_text.__name__ = (
    "checkpoint_epoch_1e9", "checkpoint_epoch_negative", "checkpoint_epoch_text")


def checkpoint_head_of_20(ctx):
    """A checkpoint whose head has 20 outputs, its args saying 43."""
    def change(s):
        w = s["model"]["fc.1.weight"]
        s["model"]["fc.1.weight"] = torch.zeros(20, w.shape[1])
        s["model"]["fc.1.bias"] = torch.zeros(20)
    _trained_checkpoint(ctx, change)


def archive_bit_flipped_alone(ctx):
    """One bit flipped in the middle of a patch's chunk, no manifest.json beside the archive."""
    path = _archive_copy(ctx)
    with h5py.File(path, "r") as f:
        info = f["data_super"].id.get_chunk_info(3)
    flip_byte(path, info.byte_offset + info.size // 2)


def archive_name_changed_alone(ctx):
    """A patch name changed in the archive's bytes (HDF5's string heap carries no checksum)."""
    path = _archive_copy(ctx)
    with h5py.File(path, "r") as f:
        name = f["name"].asstr()[2]
    data = path.read_bytes()
    flip_byte(path, data.find(name.encode()) + len(name) - 1)


def _edit_index(ctx, change, redigest: bool = True) -> Path:
    """index.json changed by ``change``; with ``redigest`` its digests are made to match again (a
    crafted index: what the checks behind the digests must catch on their own)."""
    from shards.index import INDEX_FIELDS
    sdir = _shards(ctx)
    ctx.fields["run"] = str(ctx.root / "run")
    index = json.loads((sdir / "index.json").read_text())
    change(index, sdir)
    if redigest:
        index["digests"] = field_digests(index, INDEX_FIELDS)
    (sdir / "index.json").write_text(json.dumps(index))
    return sdir


def index_band_stats_edited(ctx):
    """The normalisation statistics in index.json edited (the digests left as written)."""
    def change(index, sdir):
        index["band_stats"]["data_super"]["mean"][0] += 100.0
    _edit_index(ctx, change, redigest=False)


def index_digests_removed(ctx):
    def change(index, sdir):
        index["band_stats"]["data_super"]["mean"][0] += 100.0
        del index["digests"]
    _edit_index(ctx, change, redigest=False)


def _manifest_edit(ctx, change, fields=True):
    arch = _archive_copy(ctx)
    m = json.loads((ctx.built / MANIFEST_NAME).read_text())
    change(m)
    if fields:
        m["digests"] = field_digests(m, archive.MANIFEST_FIELDS)  # re-digested: the archive's own must still disagree
    (arch.parent / MANIFEST_NAME).write_text(json.dumps(m))


def manifest_band_stats_edited(ctx):
    _manifest_edit(ctx, lambda m: m["band_stats"]["data_super"]["mean"].__setitem__(0, 1.0), fields=False)


def manifest_band_stats_edited_and_redigested(ctx):
    _manifest_edit(ctx, lambda m: m["band_stats"]["data_super"]["mean"].__setitem__(0, 1.0))


def _archive_attr_edit(ctx, change):
    arch = _archive_copy(ctx)  # the archive alone, no manifest: its own digests must catch it
    with h5py.File(arch, "r+") as f:
        change(f)


def archive_config_edited(ctx):
    _archive_attr_edit(ctx, lambda f: f.attrs.__setitem__("build_config", f.attrs["build_config"].replace(
        '"bilinear"', '"dsen2"')))


def archive_labels_rewritten(ctx):
    def change(f):
        c = f["classes"][:]
        c[0] = 1 - c[0]
        f["classes"][:] = c  # h5py writes a fresh Fletcher-32: only the digests can tell
    _archive_attr_edit(ctx, change)


def archive_pixels_rewritten(ctx):
    """One row's data_super edited with h5py (it writes a fresh Fletcher-32), no manifest beside it;
    its name expected in the message (issue 33)."""
    def change(f):
        row = f["data_super"][3]
        row[0, :10, :10] += 7
        f["data_super"][3] = row
        ctx.expect["name"] = f["name"].asstr()[3]
    _archive_attr_edit(ctx, change)


def archive_pixel_digests_rewritten(ctx):
    """The edit, and the row's digest recomputed to match it: the digests' own digest tells."""
    from dataset_builder import archive as arch_mod

    def change(f):
        row = f["data_super"][3]
        row[0, :10, :10] += 7
        f["data_super"][3] = row
        d = f[arch_mod.PIXEL_DIGESTS][:]
        d[3, arch_mod.ARRAY_KEYS.index("data_super")] = arch_mod.pixel_digest(row)
        f[arch_mod.PIXEL_DIGESTS][:] = d
    _archive_attr_edit(ctx, change)


def archive_digests_removed(ctx):
    def change(f):
        del f.attrs["meta_sha256"]
        del f.attrs["digests"]
        s = f["split"].asstr()[:]
        f["split"][0] = "test" if s[0] != "test" else "train"
    _archive_attr_edit(ctx, change)


def index_parent_path(ctx):
    """A shard name that climbs out of the folder (the file is there, one level up)."""
    def change(index, sdir):
        e = index["splits"]["train"]["shards"][0]
        shutil.copy(sdir / e["file"], ctx.root / e["file"])
        e["file"] = "../" + e["file"]
    _edit_index(ctx, change)


def index_absolute_path(ctx):
    def change(index, sdir):
        e = index["splits"]["train"]["shards"][0]
        e["file"] = str(sdir / e["file"])
    _edit_index(ctx, change)


def index_link_out(ctx):
    """A listed shard replaced by a link to a copy outside the folder (same bytes, same sha256)."""
    def change(index, sdir):
        e = index["splits"]["train"]["shards"][0]
        shutil.move(sdir / e["file"], ctx.root / "elsewhere.tar")
        (sdir / e["file"]).symlink_to(ctx.root / "elsewhere.tar")
    _edit_index(ctx, change)


def index_shard_twice(ctx):
    """One shard listed twice in its split, with the totals made to agree: only the repeat is wrong."""
    def change(index, sdir):
        d = index["splits"]["train"]
        d["shards"].append(dict(d["shards"][0]))
        d["samples"] += d["shards"][0]["samples"]
        d["bytes"] += d["shards"][0]["bytes"]
        index["samples"] += d["shards"][0]["samples"]
    _edit_index(ctx, change)


def index_is_a_folder(ctx):
    sdir = ctx.root / "shards"
    (sdir / "index.json").mkdir(parents=True)
    ctx.fields["shards"] = str(sdir)


def manifest_of_another_build(ctx):
    """An archive, and --manifest naming another build's (its own manifest is not beside it)."""
    _archive_copy(ctx)
    other = ctx.root / "other"
    other.mkdir()
    m = json.loads((ctx.built / MANIFEST_NAME).read_text())
    m["outputs"][ARCHIVE_NAME] = "0" * 64
    m["digests"] = field_digests(m, archive.MANIFEST_FIELDS)
    (other / MANIFEST_NAME).write_text(json.dumps(m))
    ctx.fields["other_manifest"] = str(other / MANIFEST_NAME)


def index_split_total_wrong(ctx):
    _edit_index(ctx, lambda index, sdir: index["splits"]["train"].update(samples=index["splits"]["train"]["samples"] + 5))


def index_count_edited(ctx):
    """A shard's sample count raised in the index, every total raised with it: only the tar disagrees."""
    def change(index, sdir):
        d = index["splits"]["train"]
        d["shards"][0]["samples"] += 1
        d["samples"] += 1
        index["samples"] += 1
    _edit_index(ctx, change)


def out_read_only(ctx):
    """--out is a folder on a read-only file system (a tmpfs mounted ro: root writes anywhere else)."""
    ro = ctx.root / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        ctx.cleanups.append(lambda: ro.chmod(0o755))
    elif subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("running as root where no read-only file system can be mounted")
    else:
        ctx.cleanups.append(lambda: subprocess.run(["umount", str(ro)], check=True))
    ctx.fields["out"] = str(ro)
    ctx.expect["empty"] = ro


def out_is_a_file_with_shards(ctx):
    _shards(ctx)
    out_is_a_file(ctx)


def not_an_archive(ctx):
    (ctx.root / "plain.h5").write_text("a text file named like an archive")


# --------------------------------------------------------------------------- what must survive


def _manifest(ctx) -> dict:
    return json.loads((ctx.out / MANIFEST_NAME).read_text())


def only_dead_runs_temporaries_removed(ctx):
    assert not any(q.exists() for q in ctx.expect["gone"]) and all(q.exists() for q in ctx.expect["kept"])


def same_as_fresh_build(ctx):
    assert_same_archive(ctx.out / ARCHIVE_NAME, ctx.expect["fresh"] / ARCHIVE_NAME)
    assert sha256_file(ctx.out / ARCHIVE_NAME) != ctx.expect["before"]  # the change did matter


def new_splits(ctx):
    with h5py.File(ctx.out / ARCHIVE_NAME, "r") as f:
        got = dict(zip(f["name"].asstr()[:], f["split"].asstr()[:]))
    assert got == ctx.expect["splits"]


def only_listed_shards(ctx):
    sdir = ctx.root / "shards"
    index = json.loads((sdir / "index.json").read_text())
    listed = sorted(e["file"] for d in index["splits"].values() for e in d["shards"])
    assert sorted(p.name for p in sdir.glob("*.tar")) == listed  # a glob reads the set, no duplicates
    assert set(ctx.expect["old"]) - set(listed), "the case must leave old names behind to be removed"
    assert run(["verify-shards", str(sdir)])[0] == 0


def shards_intact(ctx):
    assert run(["verify-shards", str(ctx.root / "shards")])[0] == 0


def no_stale_archive(ctx):
    """Nothing built: no archive, no manifest.json, the manifest kept as the failure record, and a
    reader pointed at the archive is told why it is not there."""
    assert not (ctx.out / ARCHIVE_NAME).exists() and not (ctx.out / MANIFEST_NAME).exists()
    m = json.loads((ctx.out / FAILED_MANIFEST_NAME).read_text())
    assert m["patches"] == 0 and m["outputs"] == {} and len(m["tiles_failed"]) == len(ctx.products)
    rc, text = run(["shards", str(ctx.out / ARCHIVE_NAME), "--out", str(ctx.root / "s"), "--no-progress"])
    assert rc == 1 and "no such archive: the last build into" in text and FAILED_MANIFEST_NAME in text
    assert run(ctx.fmt("build {products} {clc} --out {out} --no-progress"))[1].count("nothing was built") == 1


def built_from_the_folder(ctx):
    assert_same_archive(ctx.out / ARCHIVE_NAME, ctx.built / ARCHIVE_NAME)
    assert sorted(_manifest(ctx)["tiles"]) == sorted(p.name.removesuffix(".SAFE") for p in ctx.products)


def others_built(ctx):
    """Every input but the bad one is in the archive, which agrees with its manifest."""
    m = _manifest(ctx)
    assert m["patches"] > 0 and m["outputs"][ARCHIVE_NAME] == sha256_file(ctx.out / ARCHIVE_NAME)
    with h5py.File(ctx.out / ARCHIVE_NAME, "r") as f:
        names = set(f["name"].asstr()[:])
        products = set(f["product"].asstr()[:])
    bad = ctx.expect["bad"]
    assert [k for k in m["tiles_failed"] if bad in k], m["tiles_failed"]
    if "names" in ctx.expect:  # BigEarthNet input: the other patches are all there
        assert names == set(ctx.expect["names"]) - {bad}
    else:
        assert products and not any(bad in p for p in products) and len(products) == len(ctx.products) - 1


def nothing_left_behind(ctx):
    """No temporary file anywhere in the output, and a later run with room resumes and completes."""
    leftovers = [p for p in ctx.out.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    assert run(ctx.fmt("build {products} {clc} --out {out} --no-progress"))[0] == 0
    assert _manifest(ctx)["patches"] > 0


def shards_resumed_with_room(ctx):
    """No temporary left, no index claiming a set; with room, the same command completes and its
    shards check out."""
    assert not [p for p in ctx.out.rglob("*") if p.name.endswith(".tmp")] and not (ctx.out / "index.json").exists()
    import shards
    assert run(ctx.fmt("shards {archive} --out {out} --no-progress"))[0] == 0
    assert not shards.verify(ctx.out)


def disk_of_one_mib(ctx):
    """The file system of --out reports 1 MiB free (what shutil.disk_usage says, in this process)."""
    real = shutil.disk_usage
    shutil.disk_usage = lambda p: real(p)._replace(free=2**20)
    ctx.cleanups.append(lambda: setattr(shutil, "disk_usage", real))


def shards_untouched(ctx):
    assert not ctx.out.exists() or not any(ctx.out.glob("*.tar"))


def no_manifest(ctx):
    """--strict stops at the first bad input: nothing is merged or claimed."""
    assert not (ctx.out / MANIFEST_NAME).exists() and not (ctx.out / ARCHIVE_NAME).exists()


def out_untouched(ctx):
    assert not (Path(ctx.fields["out"]).exists())


def lock_holder_untouched(ctx):
    assert not (ctx.out / MANIFEST_NAME).exists() and not (ctx.out / "parts").exists()


def checkpoint_kept(ctx):
    assert sha256_file(Path(ctx.fields["run"]) / "checkpoint.pt") == ctx.expect["sha"]


def nothing_to_check(ctx):
    pass


def checkpoint_file_kept(ctx):
    assert sha256_file(ctx.expect["checkpoint"]) == ctx.expect["sha"]


def no_build_output(ctx):
    assert not (ctx.out / ARCHIVE_NAME).exists() and not (ctx.out / "parts").exists()


def ignored_listed(ctx):
    m = _manifest(ctx)
    assert m["patches"] == len(ctx.expect["names"]) and not m["tiles_failed"]
    ignored = m["inputs_ignored"]
    assert set(ignored) == set(ctx.expect["ignored"]), ignored
    for path, why in ctx.expect["ignored"].items():
        assert why in ignored[path], ignored


def products_built_v2_refused(ctx):
    """The v2 folder failed as a whole, every product built."""
    m = _manifest(ctx)
    assert list(m["tiles_failed"]) == [ctx.expect["bad"]], m["tiles_failed"]
    assert m["tiles_ok"] == len(ctx.products) and m["outputs"][ARCHIVE_NAME] == sha256_file(ctx.out / ARCHIVE_NAME)


def no_shards_claimed(ctx):
    assert not (ctx.root / "s" / "index.json").exists()


def workers_capped(ctx):
    from bigearth.distinfo import usable_cores
    m = _manifest(ctx)
    assert m["workers"]["workers"] <= min(usable_cores(), len(ctx.products)) and "capped" in m["workers"]["why"]
    assert m["patches"] > 0 and not m["tiles_failed"]


def nothing_written(ctx):
    assert list(Path(ctx.expect["empty"]).iterdir()) == []


# --------------------------------------------------------------------------- the table

BUILD = "build {products} {clc} --out {out} --no-progress"
BEN = "build {ben} --out {out} --no-progress"
TRAIN = "train --data {shards} --output-dir {run} --arch resnet18 --layers 1,1,1,1 --epochs 2 --workers 0 --device cpu"


@dataclasses.dataclass
class Case:
    fault: object
    command: str
    rc: int
    message: str  # regex searched in what the command printed (and the manifest's failures)
    survives: object = nothing_to_check
    limit: int | None = None  # bytes a file may grow to (disk full), runs the command in a child


CASES = [
    # 1. resume and skip never reuse stale work
    Case(clc_changed_same_name, BUILD, 0, "", same_as_fresh_build),
    Case(product_band_changed, BUILD, 0, "", same_as_fresh_build),
    Case(ben_band_changed, BEN, 0, "", same_as_fresh_build),
    Case(ben_band_changed_during_the_build, BEN, 0, "", same_as_fresh_build),
    Case(lists_changed, "build {ben} --official-lists {lists} --out {out} --no-progress", 0, "", new_splits),
    Case(resharded_smaller, "shards {archive} --out {root}/shards --shard-size 2MiB --no-progress", 0, "",
         only_listed_shards),
    Case(finished_shard_corrupted, "shards {archive} --out {root}/shards --shard-size 400KiB --no-progress", 0, "",
         shards_intact),
    Case(all_inputs_fail_after_a_build, BUILD, 1, "malformed XML",
         no_stale_archive),
    # 2. one bad input never stops the others
    *[Case(f, BUILD, 1, msg, others_built) for f, msg in (
        (band_truncated, r"_B03_10m\.jp2: cannot decode"),
        (band_garbage, r"_B11_20m\.jp2: (cannot decode|raster is|expected one)"),
        (band_missing, r"_B8A_20m\.jp2: file is missing from the product"),
        (band_wrong_size, r"_B05_20m\.jp2: raster is 234 x 234, the tile geocoding says 240 x 240"),
        (band_wrong_crs, r"_B09_60m\.jp2: CRS EPSG:32632 does not match the tile's EPSG"),
        (mtd_malformed, r"MTD_MSIL2A\.xml: malformed XML"),
        (tile_mtd_not_square, r"MTD_TL\.xml: tile is not square"),
        (mtd_image_entry_missing, r"MTD_MSIL2A\.xml: no IMAGE_FILE entry for band B12"),
        (clc_unknown_code, r"CLC_T29UPU\S*\.tif: unknown CORINE value\(s\) \[777\]"),
        (clc_missing_for_a_tile, r"no CORINE raster covers the tile bounds"))],
    Case(band_truncated, "build {products} {clc} --out {out} --no-progress --strict", 1, r"_B03_10m\.jp2: cannot decode",
         no_manifest),
    Case(ben_unknown_class, BEN, 1, "unknown BigEarthNet class name 'Mixed forrest'",
         others_built),
    Case(ben_malformed_json, BEN, 1, r"labels_metadata\.json: malformed label JSON",
         others_built),
    Case(ben_files_do_not_match_folder, BEN, 1, "label JSON is missing",
         others_built),
    Case(clc_garbage_one_of_several, BUILD, 1,
         r"CLC_T29UPU\S*\.tif: cannot open CORINE raster", others_built),
    Case(clc_two_over_one_tile, BUILD, 1, r"2 CORINE rasters overlap the tile bounds .*: its labels would depend on "
         r"which one is read", others_built),
    Case(clc_truncated_one_of_several, BUILD, 1,
         r"CLC_T33UUP\S*\.tif: (cannot open|cannot read) CORINE raster", others_built),
    Case(_mtd_field("ten-thousand"), BUILD, 1,
         r"MTD_MSIL2A\.xml: BOA_QUANTIFICATION_VALUE is 'ten-thousand', not a number", others_built),
    Case(_mtd_field("0"), BUILD, 1,
         r"MTD_MSIL2A\.xml: BOA_QUANTIFICATION_VALUE is '0', outside the valid range", others_built),
    # 3. readers check what they read
    Case(ben_band_float32, BEN, 1, r"_B02\.tif: expected one uint16 band", others_built),
    Case(ben_band_shifted, BEN, 1, r"_B05\.tif: geotransform .* is not the 20 m grid",
         others_built),
    Case(ben_coordinates_not_numbers, BEN, 1, "'coordinates' must be numbers",
         others_built),
    Case(product_band_uint8, BUILD, 1, r"_B11_20m\.jp2: expected one uint16",
         others_built),
    # 4. the environment fails
    Case(nothing, BUILD, 1, r"\.h5: out of disk space while writing",
         nothing_left_behind, limit=400_000),
    Case(nothing, BUILD, 1,
         r"bigearth_sr\.h5: out of disk space while writing .*were needed", nothing_left_behind, limit=5_000_000),
    Case(nothing, "shards {archive} --out {out} --no-progress", 1, r"out: out of disk space while writing .*ulimit -f",
         shards_resumed_with_room, limit=400_000),  # issue 34: and no "Exception ignored" traceback after it
    Case(disk_of_one_mib, "shards {archive} --out {out} --no-progress", 1,
         r"out: the shards need about [\d.]+ MiB \(\d+ samples in \d+ shard\(s\) to write\) and 1\.0 MiB is free there",
         shards_untouched),
    Case(out_is_a_file, BUILD, 1, "cannot write the output folder",
         out_untouched),
    Case(out_locked, BUILD, 1,
         r"another build is writing here \(\{\"pid\": \d+", lock_holder_untouched),
    # issue 27: one patch per place, one row per name
    Case(ben_copy_at_the_same_place, BEN, 1, r"claims the patch at x \d+, y \d+ of .* also claims \(kept: its name",
         one_row_per_name_the_original_kept),
    Case(product_twice_processed, BUILD, 1, r"another processing of the same acquisition: not built",
         one_row_per_name_twin_refused),
    Case(product_and_its_ben_patches, "build {p0} {ben} {clc} --out {out} --no-progress", 1,
         r"as the patches of the product S2.* given too: not built", product_kept_ben_refused),
    Case(ben_empty_labels, BEN, 0, r"patches: 5 ", empty_labels_dropped_and_counted),
    # issue 27: nothing that is not a regular file is read (a FIFO would block the build forever)
    Case(ben_band_a_fifo, BEN, 1, r"_B11\.tif: is a FIFO, not a regular file: not read", others_built),
    Case(product_band_a_fifo, BUILD, 1, r"_B11_20m\.jp2: is a FIFO, not a regular file: not read", others_built),
    Case(clc_folder_with_a_fifo, "build {products} --clc {clcdir} --out {out} --no-progress", 0,
         r"note: \S*CLC_zz\.tif: not a regular file, not read as a CORINE raster"),
    Case(clc_of_one_tile_a_fifo, "build {products} --clc {clcdir} --out {out} --no-progress --upsampling bilinear", 1,
         r"clc/CLC_\w+\.tif: is a FIFO, not a regular file: not read as a CORINE raster, and none of the 2 read "
         r"covers the tile bounds", others_built),
    # issue 27: what the data path trusts is checked (statistics, counts, labels, attributes)
    *[Case(index_band_stats_edited, cmd, 1, r"index\.json: field 'band_stats' differs from its digest")
      for cmd in ("verify-shards {shards}", TRAIN, "evaluate --checkpoint x --data {shards} --out {out}")],
    Case(index_digests_removed, "verify-shards {shards}", 1, r"index\.json: its 'digests' are missing"),
    Case(manifest_band_stats_edited, "shards {arch} --out {out} --no-progress", 1,
         r"manifest\.json: field 'band_stats' differs from its digest"),
    Case(manifest_band_stats_edited_and_redigested, "shards {arch} --out {out} --no-progress", 1,
         r"manifest\.json: field 'band_stats' differs from the archive's own"),
    Case(archive_config_edited, "info {arch} --verify --no-progress", 1,
         r"attribute build_config differs from what the archive's digests record"),
    Case(archive_labels_rewritten, "shards {arch} --out {out} --no-progress", 1,
         r"dataset classes differs from what the archive's digests record"),
    # issue 33: pixels under a per-row digest that travels with the archive
    *[Case(archive_pixels_rewritten, cmd, 1, r"bigearth_sr\.h5: patch \S+_\d+_\d+: its data_super differs from its "
           r"digest") for cmd in ("info {arch} --verify --no-progress", "shards {arch} --out {out} --no-progress")],
    Case(archive_pixels_rewritten, "info {arch} --json --verify --no-progress", 1,  # issue 34: inside the JSON
         r'"problems": \[\s*"patch \S+_\d+_\d+: its data_super differs from its digest'),
    Case(archive_pixel_digests_rewritten, "shards {arch} --out {out} --no-progress", 1,
         r"dataset pixel_digests differs from what the archive's digests record"),
    Case(archive_digests_removed, "shards {arch} --out {out} --no-progress", 1,
         r"carries no checksum attributes .* pass --unchecked-archive"),
    Case(archive_digests_removed, "shards {arch} --out {out} --no-progress --unchecked-archive", 0, r"shards ->"),
    # issue 27: one run per output folder for every command that writes one
    Case(shards_and_out_locked, TRAIN.replace("{run}", "{out}"), 1, r"another train run is writing here \(\{\"pid\": \d+",
         lock_holder_untouched),
    Case(out_locked, "evaluate --checkpoint x --data x --out {out}", 1, r"another evaluation is writing here"),
    Case(out_locked, "sr-train {p0} --out {out} " + SR_TINY, 1, r"another sr-train run is writing here",
         lock_holder_untouched),
    Case(out_locked, "sr-eval {p0} --out {out} --no-figures", 1, r"another sr-eval run is writing here"),
    # issue 33: what dead runs left is cleared by the next run into the folder, never a live run's
    Case(dead_runs_temporaries, BUILD, 0, r"removed 2 temporaries of run\(s\) that died .*\n.*1 temporary of "
         r"another host's run\(s\) kept", only_dead_runs_temporaries_removed),
    Case(dead_runs_temporaries, "shards {archive} --out {out} --no-progress", 0,
         r"removed 2 temporaries of run\(s\) that died", only_dead_runs_temporaries_removed),
    Case(dead_runs_temporaries, "sr-eval {p0} --out {out} --no-figures --methods bilinear,bicubic", 0,
         r"removed 2 temporaries of run\(s\) that died", only_dead_runs_temporaries_removed),
    # 5. options are validated where they are parsed
    Case(nothing, "build {products} --out {out} --workers -2", 2, r"--workers: must be an integer >= 1"),
    Case(nothing, "build {products} --out {out} --max-cloud 1.5", 2, r"--max-cloud: must be in \[0, 1\]"),
    Case(nothing, "build {products} --out {out} --split-fractions 0.5,0.6,0", 2, "--split-fractions: must be three"),
    Case(nothing, "build {products} --out {out} --split-fractions 0.5,0.5", 2, "--split-fractions: must be three"),
    Case(nothing, "synth --out {out} --tile-size-m 1000", 2, "--tile-size-m: must be a positive multiple of 1200"),
    Case(nothing, "shards {archive} --out {out} --shard-size 0", 2, "--shard-size: must be a positive size"),
    Case(nothing, "shards {archive} --out {out} --splits train,nope", 2, "--splits: must be comma-separated names"),
    Case(nothing, "sr-train --out {out} --batch2 0", 2, "--batch2: must be an integer >= 1"),
    Case(nothing, "sr-eval x.mat --slack -1", 2, r"--slack: must be"),
    Case(nothing, "build {products} --out {out} --upsampling dsen2 --sr-device cuda:7", 2,
         r"--sr-device: 'cuda:7': this machine has \d+ CUDA device"),
    Case(nothing, "train --data x --output-dir {out} --batch-size 0", 2, "--batch-size: must be an integer >= 1"),
    Case(nothing, "train --data x --output-dir {out} --milestones 30,x", 2, "--milestones: must be comma-separated"),
    Case(nothing, "evaluate --checkpoint x --data x --out {out} --threshold 2", 2, r"--threshold: must be in \[0, 1\]"),
    # 6. clear messages
    Case(folder_of_products, "build {parent} --out {out} --upsampling bilinear --no-progress", 0,
         r"in: 3 Level-2A product\(s\) found \(3 \.SAFE folder\(s\), 0 \.zip\), labelled from the 3 CORINE raster",
         built_from_the_folder),
    Case(index_of_another_build, "read-shards {shards} train", 1,
         r"its first sample is .* the index belongs to another build"),
    *[Case(shard_of_another_build, cmd, 1, r"bigearth_sr-train-000000\.tar: sample '\S+' at byte offset 0 names shard "
           r"[0-9a-f]{12}…, the index lists [0-9a-f]{12}… for this file: it is not the shard the index lists")
      for cmd in ("read-shards {shards} train", TRAIN)],
    Case(archive_damaged, "shards {arch} --out {root}/s --no-progress", 1,
         r"bigearth_sr\.h5: dataset 'data_super' cannot be read"),
    Case(archive_not_hdf5, "shards {arch} --out {root}/s --no-progress", 1, r"bigearth_sr\.h5: not a readable HDF5"),
    Case(checkpoint_truncated, TRAIN + " --resume", 1, r"checkpoint\.pt: not a readable checkpoint", checkpoint_kept),
    Case(checkpoint_other_variant, TRAIN + " --resume", 1,
         r"checkpoint\.pt: checkpoint of another model: --variant 'rgb' there, 'super' here; --labels 19 there, 43 here",
         checkpoint_kept),
    Case(checkpoint_other_data, TRAIN + " --resume", 1,
         r"checkpoint\.pt: checkpoint of a run on other data: archive_sha256 '0+' there, '[0-9a-f]{64}' here",
         checkpoint_kept),
    Case(shards_without_split, TRAIN + " --train-split test", 1, r"split 'test' is not in the shards \(they hold train"),
    Case(nothing, TRAIN.replace("{shards}", "x").replace("{run}", "{out}") + " --train-split nope", 2,
         r"--train-split: must be train, validation \(or val\) or test, got 'nope'"),
    # 8. files from elsewhere are data, never code
    Case(checkpoint_with_code, TRAIN + " --resume", 1, r"checkpoint\.pt: refused: .*could run code", checkpoint_kept),
    Case(checkpoint_with_code, "evaluate --checkpoint {run}/checkpoint.pt --data {shards} --out {root}/ev", 1,
         r"checkpoint\.pt: refused: .*could run code", checkpoint_kept),
    # 9.1 weights are inputs like any other
    Case(weights_nan, BUILD + " --sr-weights {weights}", 1, r"dsen2_bad\.npz: tensor \S+ has 1 non-finite value",
         no_build_output),
    Case(weights_nan, "sr-eval {p0} --sr-weights {weights} --no-figures", 1,
         r"dsen2_bad\.npz: tensor \S+ has 1 non-finite value"),
    Case(weights_wrong_shape, BUILD + " --sr-weights {weights}", 1, r"dsen2_bad\.npz: tensor \S+ has shape",
         no_build_output),
    *[Case(virtual_archive_parts_gone, cmd, 1, r"bigearth_sr\.h5: a virtual archive \(--merge virtual\) whose part "
           r"file\(s\) are gone: parts/") for cmd in ("info {varch}", "info {varch} --verify --no-progress",
                                                    "shards {varch} --out {out} --no-progress")],
    Case(ben_symlink_loop, BEN, 0, r"patches: 6 ", all_ben_built),
    Case(sr_crops, "sr-eval {constant} --no-figures", 1, r"_1_1\.h5: every pixel of its 20 m and 60 m bands has one value"),
    Case(sr_crops, "sr-eval {nan} --no-figures", 1, r"_1_1\.h5: im20 holds 1 NaN or infinite value\(s\)"),
    *[Case(nothing, "sr-train {p0} --out {out} --blocks 1 --features 8 --steps-per-epoch 2 --batch2 4 --no-progress "
           + crop, 1, message, no_checkpoint_written)
      for crop, message in (("--crop6 100000", r"--crop6 100000: must be a multiple of 6"),
                            ("--crop6 99996", r"--crop6 99996: no training scene is 99996 px"))],
    *[Case(name_too_long, cmd, 1, r"error: \S+/a{300}\S*: File name too long")
      for cmd in (BUILD.replace("{out}", "{long}/x"), "shards {archive} --out {long}", "synth --out {long}",
                  "verify-shards {long}", "train --data {long} --output-dir {out}", "sr-eval {long}")],
    *[Case(nothing, cmd, 1, r"https://example\.org/shards: URLs are not supported")
      for cmd in ("verify-shards https://example.org/shards", "train --data https://example.org/shards --output-dir {out}")],
    Case(weights_bit_flipped, "sr-eval {p0} --sr-weights {weights} --no-figures", 1,
         r"dsen2_bad\.npz: tensor \S+ cannot be read \(BadZipFile: Bad CRC-32.*the file is damaged"),
    Case(weights_text, BUILD + " --sr-weights {weights}", 1,
         r"weights\.npz: not a DSen2 weights bundle: a bundle is an \.npz \(zip\) archive", no_build_output),
    Case(sr_checkpoint_nan, "sr-train {p0} --out {srrun} --epochs2 2 --resume " + SR_TINY, 1,
         r"checkpoint_2x\.pt: tensor net\.\S+ has \d+ non-finite value", checkpoint_file_kept),
    # 9.3 nothing dropped without a trace
    Case(ben_misnamed_folder, BEN, 1, r"_copy: holds a patch's files .*not a BigEarthNet patch name", others_built),
    Case(ben_stray_entries, BEN, 0, "", ignored_listed),
    # 9.4 an archive checks itself (no manifest beside it)
    Case(archive_bit_flipped_alone, "shards {arch} --out {root}/s --no-progress", 1,
         r"bigearth_sr\.h5: dataset 'data_super' cannot be read", no_shards_claimed),
    Case(archive_bit_flipped_alone, "info {arch} --verify --no-progress", 1,
         r"dataset 'data_super', row 3: cannot be read"),
    Case(archive_name_changed_alone, "shards {arch} --out {root}/s --no-progress", 1,
         r"bigearth_sr\.h5: the descriptive datasets .* differ from the meta_sha256", no_shards_claimed),
    Case(archive_name_changed_alone, "info {arch} --verify --no-progress", 1, r"differ from the meta_sha256"),
    # 9.5 shard indexes are data, not paths to follow
    Case(index_parent_path, "verify-shards {shards}", 1, r"index\.json: shard file '\.\./\S+' is not a plain file name"),
    Case(index_parent_path, "read-shards {shards} train", 1, r"shard file '\.\./\S+' is not a plain file name"),
    Case(index_parent_path, TRAIN, 1, r"shard file '\.\./\S+' is not a plain file name"),
    Case(index_absolute_path, "read-shards {shards} train", 1, r"shard file '/\S+' is not a plain file name"),
    Case(index_link_out, "verify-shards {shards}", 1, r"is a link out of the index's folder"),
    Case(index_link_out, "read-shards {shards} train", 1, r"is a link out of the index's folder"),
    Case(index_shard_twice, "verify-shards {shards}", 1, r"the same shard name is listed 2 times \(train:\S+, train:"),
    Case(index_shard_twice, TRAIN, 1, r"index\.json: split 'train' lists the shard \S+ twice"),
    Case(index_is_a_folder, "verify-shards {shards}", 1, r"index\.json: is a folder, not a regular file"),
    Case(nothing, "shards {archive} --out {out} --splits test --no-progress", 1,
         r"--splits: \S+bigearth_sr\.h5 has no patch in split\(s\) test \(it holds train, validation\)"),
    Case(nothing, "shards {archive} --out {out} --manifest {root}/none.json --no-progress", 1,
         r"none\.json: no such build manifest \(--manifest\)"),
    Case(manifest_of_another_build, "shards {arch} --out {out} --manifest {other_manifest} --no-progress", 1,
         r"other/manifest\.json: is the manifest of another build"),
    Case(index_split_total_wrong, "verify-shards {shards}", 1, r"split 'train' says \d+ samples, its shards add up to"),
    Case(index_count_edited, "verify-shards {shards}", 1, r"holds \d+ samples, the index says \d+"),
    # 9.6 bounds
    Case(nothing, BUILD + " --workers 100000", 0, r"note: --workers 100000 capped at \d+ \(bound by", workers_capped),
    Case(nothing, "synth --out {out} --tile-size-m 1200000000", 2, r"--tile-size-m: must be at most 109800 m"),
    # 9.7 one-line errors everywhere
    *[Case(out_is_a_file, cmd, 1, r"plain/out: cannot write the output folder \(\S+/plain is a file, not a folder\)",
           out_untouched) for cmd in ("synth --out {out} --products 1", "sr-eval {p0} --out {out} --no-figures",
                                      "sr-train {p0} --out {out} " + SR_TINY,
                                      "evaluate --checkpoint x --data x --out {out}")],
    Case(out_is_a_file_with_shards, "train --data {shards} --output-dir {out} --epochs 1 --device cpu", 1,
         r"plain/out: cannot write the output folder", out_untouched),
    *[Case(out_read_only, cmd, 1, r"ro: cannot write the output folder \((read-only file system|permission denied)\)",
           nothing_written) for cmd in ("synth --out {out} --products 1", "sr-eval {p0} --out {out} --no-figures",
                                        "sr-train {p0} --out {out} " + SR_TINY, BUILD,
                                        "evaluate --checkpoint x --data x --out {out}")],
    Case(not_an_archive, "info {root}/plain.h5", 1, r"plain\.h5: not a readable HDF5 archive"),
    Case(nothing, "info {archive}", 0, r"checksums: every chunk: HDF5 Fletcher-32.*\n  reading: the patch arrays .*"
                                       r"import hdf5plugin.*HDF5_PLUGIN_PATH"),
    Case(nothing, "train --data x --output-dir {out} --layers 0,-1,x", 2, r"--layers: must be four positive integers"),
    # issue 36: nothing unbounded is parsed, every member is checked as it is read, checkpoints are checked
    Case(ben_label_json_deep, BEN, 1, r"_labels_metadata\.json: label JSON is nested 15000 levels deep, more than "
         r"the 4 such a file can be: not parsed", others_built),
    Case(ben_label_json_huge, BEN, 1, r"_labels_metadata\.json: label JSON is 200,000 bytes, more than the 65,536 "
         r"such a file can be: not read", others_built),
    Case(ben_band_declares_10_gigapixels, BEN, 1, r"_B02\.tif: band file declares 100,000 x 100,000 pixels in 1 "
         r"band\(s\), more than a patch can be \(120 x 120, at most 16 bands\): not decoded", others_built),
    Case(v2_parquet_of_ten_million_rows, "build {products} {v2} {clc} --out {out} --no-progress", 1,
         r"v2/metadata\.parquet: declares 10,000,000 rows in [\d,]+ bytes, more than a BigEarthNet v2 table can be",
         products_built_v2_refused),
    Case(ben_stray_files_in_a_patch, BEN, 0, "", ignored_listed),
    Case(shard_meta_byte_changed, "read-shards {shards} train", 1, r"meta\.json fails its CRC-32C \(corrupted bytes\)"),
    Case(shard_meta_byte_changed, TRAIN, 1, r"meta\.json fails its CRC-32C \(corrupted bytes\)"),
    Case(checkpoint_nan_weights, "evaluate --checkpoint {run}/checkpoint.pt --data {shards} --out {root}/ev", 1,
         r"checkpoint\.pt: tensor fc\.1\.weight has 1 non-finite value\(s\)", checkpoint_kept),
    Case(checkpoint_unknown_arch, "evaluate --checkpoint {run}/checkpoint.pt --data {shards} --out {root}/ev", 1,
         r"checkpoint\.pt: its arch is 'resnet9000', not one this trainer makes \(resnet18, ", checkpoint_kept),
    Case(checkpoint_epoch_1e9, TRAIN + " --resume", 1,
         r"checkpoint\.pt: its epoch is 1000000000, past the 1 epochs of the run that wrote it", checkpoint_kept),
    Case(checkpoint_epoch_negative, TRAIN + " --resume", 1, r"checkpoint\.pt: its epoch is -5, not a count",
         checkpoint_kept),
    Case(checkpoint_epoch_text, TRAIN + " --resume", 1, r"checkpoint\.pt: its epoch is 'x', not a count",
         checkpoint_kept),
    Case(checkpoint_head_of_20, "evaluate --checkpoint {run}/checkpoint.pt --data {shards} --out {root}/ev", 1,
         r"checkpoint\.pt: its weights do not fit the model: tensor fc\.1\.weight is \(20, \d+\) there, \(43, \d+\) "
         r"here \(a head of 20 labels there, 43 here\)", checkpoint_kept),
    Case(shards_of_every_split, TRAIN + " --lr 1e8 --warmup-epochs 0", 3,
         r"stopped: (the loss became|loss became|the weights became non-finite|the predictions .* are NaN)"),
]


def _id(c: Case) -> str:
    return f"{c.fault.__name__}-{c.command.split()[0]}" + (f"-limit{c.limit}" if c.limit else "") + \
        (f"-{c.command.split()[-1]}" if c.fault is nothing and not c.limit else "")


def _ctx(tmp_path, products, synth_dir, built) -> Ctx:
    """A fresh case folder: copies of the synthetic products and their CORINE rasters."""
    copies = []
    for p in products:
        shutil.copytree(p, tmp_path / "in" / p.name)
        copies.append(tmp_path / "in" / p.name)
    clc = []
    for c in sorted(synth_dir.glob("CLC_*.tif")):
        shutil.copy(c, tmp_path / c.name)
        clc.append(tmp_path / c.name)
    return Ctx(tmp_path, copies, clc, built[0])


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_fault(case: Case, tmp_path, products, synth_dir, built):
    ctx = _ctx(tmp_path, products, synth_dir, built)
    try:
        case.fault(ctx)
        argv = ctx.fmt(case.command)
        if case.limit:
            rc, text = run_limited(argv, case.limit)
        elif "lock" in ctx.expect:
            with folder_lock(ctx.expect["lock"]):
                rc, text = run(argv)
        else:
            rc, text = run(argv)
        manifest = ctx.out / MANIFEST_NAME
        if argv[0] == "build" and manifest.exists():
            text += json.dumps(json.loads(manifest.read_text())["tiles_failed"])
        assert rc == case.rc, text[-3000:]
        assert re.search(case.message, text), text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        case.survives(ctx)
    finally:
        for undo in ctx.cleanups:
            undo()


@pytest.mark.parametrize("content,pattern", [
    ("{not json", "malformed label JSON"),
    ('{"labels": ["Mixed forrest"], "coordinates": {"ulx": 0, "uly": 1200, "lrx": 1200, "lry": 0}, "projection": "", '
     '"tile_source": "x", "acquisition_date": "2017-01-01 00:00:00"}', "unknown BigEarthNet class name 'Mixed forrest'"),
    ('{"labels": "Pastures", "coordinates": {}, "projection": "", "tile_source": "x", "acquisition_date": ""}',
     "'labels' must be a list"),
    ('{"labels": []}', "has no 'coordinates'"),
    ('{"labels": [], "coordinates": {"ulx": 0, "uly": 1200, "lrx": 600, "lry": 0}, "projection": "", '
     '"tile_source": "x", "acquisition_date": "2017-01-01 00:00:00"}', "do not span one 1200 m patch"),
    ('{"labels": [], "coordinates": {"ulx": 0, "uly": 1200, "lrx": 1200, "lry": 0}, "projection": "", '
     '"tile_source": "x", "acquisition_date": "yesterday"}', "is not YYYY-MM-DD HH:MM:SS"),
])
def test_label_json_schema(tmp_path, content, pattern):
    """The label JSON reader on its own (the table above runs it inside builds)."""
    from bigearth.errors import InputError
    from dataset_builder.labels import read_label_json

    f = tmp_path / "P_labels_metadata.json"
    f.write_text(content)
    with pytest.raises(InputError, match=pattern) as e:
        read_label_json(f)
    assert str(f) in str(e.value)


# a command's own peak resident memory, reported by the child itself (RUSAGE_CHILDREN would be the
# largest of every child this test process ever waited for)
_PEAK_RSS = """
import resource, sys
from bigearth_cli.cli import main
try:
    rc = main(sys.argv[1:])
finally:
    sys.stderr.write(f"\\npeak_rss_kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
sys.exit(rc)
"""


def _run_measured(argv: list[str]) -> tuple[int, str, int]:
    r = subprocess.run([sys.executable, "-c", _PEAK_RSS, *argv, "--workers", "1"], capture_output=True, text=True,
                       timeout=300)
    peak = int(re.findall(r"peak_rss_kib (\d+)", r.stderr)[-1]) << 10
    return r.returncode, r.stdout + r.stderr, peak


HOSTILE = [c for c in CASES if c.fault in (ben_label_json_huge, ben_band_declares_10_gigapixels,
                                           v2_parquet_of_ten_million_rows)]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.fault.__name__ for c in HOSTILE])
def test_hostile_inputs_are_bounded(case: Case, tmp_path, products, synth_dir, built):
    """Each hostile file of issue 36 fails alone with its line, the other inputs are built, and
    the build's peak memory is that of the same build without the file: the file was refused
    before it was decoded (decoded, the GeoTIFF alone would take 20 GB)."""
    ctx = _ctx(tmp_path, products, synth_dir, built)
    case.fault(ctx)
    rc, text, peak = _run_measured(ctx.fmt(case.command))
    assert rc == case.rc and re.search(case.message, text) and "Traceback" not in text, text[-3000:]
    case.survives(ctx)
    if "v2" in ctx.fields:  # the same build without the bad input
        ctx.fields["v2"] = ""
    else:
        shutil.rmtree(Path(ctx.fields["ben"]) / ctx.expect["bad"])
    ctx.fields["out"] = str(tmp_path / "clean")  # fields win over Ctx.out in fmt
    rc, text, clean = _run_measured(ctx.fmt(case.command))
    assert rc == 0, text[-3000:]
    assert peak <= 1.2 * clean + (64 << 20), f"peak {peak >> 20} MiB with the hostile file, {clean >> 20} MiB without"


# --------------------------------------------------------------------------- issue 34: every reader alike

def manifest_patches_edited_and_redigested(ctx):
    """The manifest's patch count edited and its digests made to match: only a comparison with the
    archive can tell."""
    _manifest_edit(ctx, lambda m: m.__setitem__("patches", m["patches"] + 5))


READER_FAULTS = [archive_config_edited, archive_labels_rewritten, archive_pixels_rewritten,
                 archive_pixel_digests_rewritten, archive_digests_removed, archive_name_changed_alone,
                 manifest_band_stats_edited, manifest_band_stats_edited_and_redigested,
                 manifest_patches_edited_and_redigested]


def _refusal(reader: str, arch: Path, out: Path) -> str:
    """The line ``reader`` refuses ``arch`` with (``<file>: <what>``), or '' when it used it."""
    if reader in ("shards", "info"):
        argv = (["shards", str(arch), "--out", str(out), "--no-progress"] if reader == "shards"
                else ["info", str(arch), "--verify", "--no-progress"])
        rc, text = run(argv)
        # info --verify lists the problems it read as "<archive>: <what>" (its first line describes the archive)
        lines = [ln.removeprefix("error: ") for ln in text.splitlines() if ln.startswith("error: ") or (
            reader == "info" and ln.startswith(f"{arch}: ") and " patches; merge=" not in ln)]
        assert (rc == 1) == bool(lines) and "Traceback" not in text, text[-2000:]
        return lines[0] if lines else ""
    from bigearth.errors import InputError
    try:
        if reader == "tfds":
            tfds = pytest.importorskip("tensorflow_datasets")
            from dataset_builder.bigearth_sr import Builder
            Builder(config="super_bilinear", data_dir=str(out)).download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=str(arch.parent)))
        else:  # torchgeo: every sample of every split, as a training run would read them
            pytest.importorskip("torchgeo")
            from bigearth_torchgeo import BigEarthSR
            for split in ("train", "val", "test"):
                ds = BigEarthSR(arch.parent, split)
                for i in range(len(ds)):
                    ds[i]
    except InputError as e:
        return str(e)
    return ""


@pytest.mark.parametrize("fault", READER_FAULTS, ids=[f.__name__ for f in READER_FAULTS])
def test_every_reader_refuses_what_one_refuses_in_the_same_line(fault, tmp_path, products, synth_dir, built):
    """Issue 34: shards, info --verify, the TFDS builder and the torchgeo dataset make one check
    (archive.check, and each patch's pixel digest as it is read): a damaged or changed archive, or
    a manifest that disagrees with it, is refused by all four, in the same line."""
    ctx = _ctx(tmp_path, products, synth_dir, built)
    fault(ctx)
    arch = Path(ctx.fields["arch"])
    lines = {r: _refusal(r, arch, tmp_path / f"out_{r}") for r in ("shards", "info", "tfds", "torchgeo")}
    assert all(lines.values()), lines
    assert len(set(lines.values())) == 1, lines
