"""Reading the same patches five ways, side by side in one run (samples/s, one process).

  (a) shards     - `shards.load` to torch tensors (tar -> CRC check -> npy decode -> tensor), super variant
  (a') shards+n  - the same with per-band normalisation to float32 in the loader
  (a0)           - (a) without comparing each sample's meta.json with its shard's fingerprint in the
                   index (issue 34: what that check costs; the two alternate in one run)
  (b) tar bytes  - the members (a) reads (super.npy, labels.json, meta.json), read from the same
                   shards with `tarfile` into buffers, nothing decoded: the disk/tar ceiling
  (b') all tar   - every member streamed with `tarfile` (what a plain tar/webdataset reader does)
  (b'')          - the members of (b) through the reader's own header parsing, nothing decoded
  raw            - the shard files read sequentially (the page cache's ceiling)
  (c) GeoTIFFs   - BigEarthNet-style patch folders (12 single-band GeoTIFFs at native resolution +
                   labels JSON) read with rasterio and resampled to 12x120x120 with torch (bilinear),
                   as most projects read BigEarthNet today
  (d) HDF5       - random access in bigearth_sr.h5 (one row of data_super + classes per sample)
  (e) TFDS       - `tfds.data_source` over the array_record build of the super config, random access

All read from the page cache (the files were just written; nothing drops caches), so (b) is
the ceiling a warm disk gives. Targets: (a) >= 0.8 x (b) and >= 25 x (c).

    python benchmarks/loaders.py --work /tmp/bench_loaders [--products 4 --tile-size-m 24000]
    python benchmarks/loaders.py --only a      # only the rows whose label starts with (a
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np


def timed(fn, n_expected: int | None = None) -> tuple[float, int]:
    t = time.perf_counter()
    n = fn()
    dt = time.perf_counter() - t
    if n_expected is not None:
        assert n == n_expected, (n, n_expected)
    return n / dt, n


def write_band_geotiffs(record, folder: Path, stem: str) -> None:
    """A patch's 12 bands at native resolution as ``<stem>_<band>.tif``, georeferenced, as
    BigEarthNet (v1 and v2) stores them."""
    import rasterio
    from rasterio.transform import from_origin

    from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M

    folder.mkdir(parents=True, exist_ok=True)
    ulx, uly = record.bounds[0], record.bounds[1]
    for cube, bands in ((record.data_10m, BANDS_10M), (record.data_20m, BANDS_20M), (record.data_60m, BANDS_60M)):
        res = 1200 / cube.shape[-1]
        for b, a in zip(bands, cube):
            with rasterio.open(folder / f"{stem}_{b}.tif", "w", driver="GTiff", width=a.shape[1], height=a.shape[0],
                               count=1, dtype="uint16", crs=record.crs, transform=from_origin(ulx, uly, res, res)) as ds:
                ds.write(a, 1)


def write_geotiff_folders(archive_path, out: Path, limit: int) -> list[Path]:
    """The first ``limit`` patches as BigEarthNet v1 folders: <name>/<name>_<band>.tif + labels JSON."""
    from bigearth import nomenclature as nom
    from dataset_builder import archive

    folders = []
    for i, r in enumerate(archive.iter_records(archive_path)):
        if i >= limit:
            break
        d = out / r.name
        write_band_geotiffs(r, d, r.name)
        (d / f"{r.name}_labels_metadata.json").write_text(json.dumps({"labels": nom.names_of(r.classes)}))
        folders.append(d)
    return folders


def read_geotiff_folders(folders) -> int:
    import rasterio
    import torch
    import torch.nn.functional as F

    from bigearth import nomenclature as nom
    from bigearth.record import BANDS_SUPER

    for d in folders:
        bands = []
        for b in BANDS_SUPER:
            with rasterio.open(d / f"{d.name}_{b}.tif") as ds:
                a = torch.from_numpy(ds.read(1).astype(np.float32))[None, None]
            if a.shape[-1] != 120:
                a = F.interpolate(a, size=(120, 120), mode="bilinear", align_corners=False)
            bands.append(a[0, 0])
        x = torch.stack(bands)
        y = torch.from_numpy(nom.multi_hot_from_names(
            json.loads((d / f"{d.name}_labels_metadata.json").read_text())["labels"]).astype(np.float32))
        assert x.shape == (12, 120, 120) and y.shape == (43,)
    return len(folders)


def prepare(work: Path, products: int, tile_size_m: int, workers: int | None = None):
    """The data every loader row reads, from scratch in ``work``: synthetic products, their
    archive (bilinear: the readers are measured, not the method; the TFDS row reads the
    super_bilinear config) and its shards. Returns (manifest, archive path, shard index)."""
    import shards
    from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build
    from dataset_builder.synth import write_default_set

    shutil.rmtree(work, ignore_errors=True)
    write_default_set(work / "products", products, tile_size_m, seed=0, cloud_cover=0.02, snow_cover=0.01)
    cfg = BuildConfig(out_dir=str(work / "dataset"), clc=[str(p) for p in (work / "products").glob("CLC_*.tif")],
                      upsampling="bilinear", progress=False)
    manifest = build(sorted((work / "products").glob("*.SAFE")), cfg, workers=workers)
    arch = work / "dataset" / ARCHIVE_NAME
    return manifest, arch, shards.write_shards(arch, work / "shards", progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/bench_loaders")
    ap.add_argument("--products", type=int, default=4)
    ap.add_argument("--tile-size-m", type=int, default=24_000)
    ap.add_argument("--geotiff-patches", type=int, default=300, help="patches written as GeoTIFF folders for (c)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", default=None, help="run only the rows whose label starts with '(ONLY' (default: all)")
    args = ap.parse_args()
    every = args.only is None

    import h5py
    import hdf5plugin  # noqa: F401
    import torch

    import shards

    work = Path(args.work)
    t = time.perf_counter()
    manifest, arch, index = prepare(work, args.products, args.tile_size_m, workers=2)
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    n = index["splits"][split]["samples"]
    urls = [work / "shards" / e["file"] for e in index["splits"][split]["shards"]]
    folders = write_geotiff_folders(arch, work / "geotiff", args.geotiff_patches) if every else []

    if every:
        import tensorflow_datasets as tfds

        from dataset_builder.bigearth_sr import Builder
        tb = Builder(config="super_bilinear", data_dir=str(work / "tfds"), file_format="array_record")
        tb.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(work / "dataset")))
        src = tb.as_data_source()[split]
    else:
        src = []
    print(f"data ready in {time.perf_counter() - t:.0f} s: {manifest['patches']} patches, split {split}: {n}")

    def a():
        return sum(1 for _ in shards.load(work / "shards", split, shuffle=0, normalize=False))

    def a_unchecked():  # (a) with the per-sample shard comparison replaced by nothing
        import shards.stream as stream
        own, stream._own = stream._own, lambda *args: None
        try:
            return a()
        finally:
            stream._own = own

    def a_norm():
        return sum(1 for _ in shards.load(work / "shards", split, shuffle=0))

    wanted = (".super.npy", ".labels.json", ".meta.json")

    def b():  # the members (a) reads, read with tarfile as they are; nothing decoded
        k = 0
        for u in urls:
            with open(u, "rb") as fh, tarfile.open(fileobj=fh, mode="r:") as tf:
                for m in tf:
                    if m.name.endswith(wanted):
                        fh.seek(m.offset_data)
                        fh.readinto(bytearray(m.size))
                    k += m.name.endswith(".meta.json")
                    tf.members = []
        return k

    def b_lean():  # the same members through the reader's own tar parsing, nothing decoded
        from shards.tar import member_key, tar_members
        wanted_ext = {"super.npy", "labels.json", "meta.json"}
        k = 0
        for u in urls:
            for m, _ in tar_members(str(u), lambda name: member_key(name)[1] in wanted_ext, {}):
                k += m.name.endswith(".meta.json")
        return k

    def b_all():  # every member, as a plain tar reader (webdataset's) streams them
        k = 0
        for u in urls:
            with open(u, "rb") as fh, tarfile.open(fileobj=fh, mode="r|") as tf:
                for m in tf:
                    tf.extractfile(m).read()
                    k += m.name.endswith(".meta.json")
                    tf.members = []
        return k

    def raw():  # the files' bytes, sequentially: the page cache's own ceiling
        buf = bytearray(2**24)
        for u in urls:
            with open(u, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass
        return n

    rows = list(np.flatnonzero(h5py.File(arch, "r")["split"].asstr()[:] == split))
    order = np.random.default_rng(0).permutation(rows)

    def d():
        with h5py.File(arch, "r") as f:
            xs, cs = f["data_super"], f["classes"]
            for i in order:
                torch.from_numpy(xs[i]), torch.from_numpy(cs[i].astype(np.float32))
        return len(order)

    perm = np.random.default_rng(0).permutation(len(src))

    def e():
        for i in perm:
            ex = src[int(i)]
            torch.from_numpy(ex["data_super"])
        return len(perm)

    cases = [("(a) shards -> tensors (uint16)", a, n),
             ("(a0) the same without the per-sample shard check", a_unchecked, n),
             ("(a') shards -> normalised float32", a_norm, n),
             ("(b) same tar bytes, no decoding", b, n), ("(b') every member, tarfile stream", b_all, n),
             ("(b'') same members, the reader's tar parser, no decoding", b_lean, n),
             ("raw sequential read of the shard files", raw, n), ("(c) GeoTIFF folders + rasterio", lambda: read_geotiff_folders(folders), len(folders)),
             ("(d) HDF5 random access", d, n), ("(e) tfds.data_source (array_record)", e, n)]
    cases = [c for c in cases if every or c[0].startswith("(" + args.only) or c[0].startswith("(b)")]
    results = {name: [] for name, _, _ in cases}
    for _ in range(args.repeat):
        for name, fn, expect in cases:
            results[name].append(timed(fn, expect)[0])
    best = {k: max(v) for k, v in results.items()}
    ref_b, ref_c = best["(b) same tar bytes, no decoding"], best.get("(c) GeoTIFF folders + rasterio", float("nan"))
    mb = sum(e["bytes"] for e in index["splits"][split]["shards"]) / 1e6
    print(f"\nmachine: {platform.machine()}, {__import__('os').cpu_count()} cores; {n} samples, {mb:.0f} MB of shards; "
          f"best of {args.repeat}; one process")
    print("| reader | samples/s | MB/s of shard | x (b) | x (c) |")
    print("|---|---|---|---|---|")
    for name, _, _ in cases:
        s = best[name]
        print(f"| {name} | {s:,.0f} | {s * mb / n:,.0f} | {s / ref_b:.2f} | {s / ref_c:.1f} |")
    checked, unchecked = "(a) shards -> tensors (uint16)", "(a0) the same without the per-sample shard check"
    if unchecked in best:
        each = "; ".join(f"{x:,.0f} / {y:,.0f}" for x, y in zip(results[checked], results[unchecked]))
        print(f"\nthe per-sample shard check: (a) / (a0) = {best[checked] / best[unchecked]:.3f} "
              f"(best of {args.repeat}; each run, checked / not: {each})")


if __name__ == "__main__":
    main()
