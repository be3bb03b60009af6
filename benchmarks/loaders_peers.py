"""Our readers against what BigEarthNet users run today: the same patches, the same output, one run.

Every row yields, per sample, the 12 bands at 120 x 120 as a torch tensor plus the labels as a
tensor, for the training split of one synthetic build:
  ours, shards     - `shards.load`/`shards.loader` streaming the tar shards (uint16, super variant;
                     "random" = its shuffle buffer: shards offer no random access by design)
  ours, HDF5       - rows of bigearth_sr.h5 (`data_super`, `classes`) through h5py
  reBEN LMDB       - the archive rewritten as reBEN/ConfigILM store it: an LMDB whose values are
                     safetensors documents of one uint16 array per band at native resolution,
                     keyed by patch id; read as ConfigILM's BENv2 reader does (read-only
                     environment without lock or readahead, one transaction per get, the
                     document decoded, every band not at 120 px interpolated bilinearly with
                     aligned corners in torch, 19 labels from a dict)
  ours, torchgeo   - `bigearth_torchgeo.BigEarthSR` over the same archive: torchgeo's sample dicts
                     (float32 image, int64 multi-hot), each patch checked against its pixel digest
  torchgeo         - torchgeo's own `BigEarthNetV2` dataset class (bands="s2") on a reBEN-layout
                     folder of the same patches (GeoTIFFs read by rasterio, resampled to 120 px
                     bilinearly on read; it also reads each patch's reference map, as it always does)
each in random and sequential order, in one process (a DataLoader without workers) and with
DataLoader workers, batches of 64. Samples/s and the ratio to ours (the shards for streaming, the
HDF5 archive for random access); the LMDB's write time is reported too. Peer libraries (lmdb,
safetensors, torchgeo, zstandard) are benchmark dependencies only: `pip install -e .[peers]`.

    python benchmarks/loaders_peers.py --work /tmp/bench_peers [--products 4 --tile-size-m 24000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.loaders import prepare, write_band_geotiffs  # noqa: E402  (the loader benchmark's data)

S2_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A")  # reBEN's order
BATCH = 64


def v2_id(record) -> str:
    """reBEN's patch id: the product name without its generation time, then x and y."""
    return f"{record.product.rsplit('_', 1)[0]}_{record.x}_{record.y}"


def native_bands(record) -> dict:
    from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M
    out = {}
    for cube, names in ((record.data_10m, BANDS_10M), (record.data_20m, BANDS_20M), (record.data_60m, BANDS_60M)):
        out.update({b: np.ascontiguousarray(a) for b, a in zip(names, cube)})
    return out


def write_lmdb(records, path: Path) -> float:
    """The patches as reBEN's LMDB: key = patch id, value = safetensors of the native bands. Seconds."""
    import lmdb
    from safetensors.numpy import save

    t = time.perf_counter()
    size = sum(r.data_10m.nbytes + r.data_20m.nbytes + r.data_60m.nbytes for r in records)
    env = lmdb.open(str(path), map_size=4 * size + (64 << 20))
    with env.begin(write=True) as txn:
        for r in records:
            txn.put(v2_id(r).encode(), save(native_bands(r)))
    env.sync()
    env.close()
    return time.perf_counter() - t


def write_v2_folder(records, root: Path) -> None:
    """A reBEN folder of the patches, as torchgeo's BigEarthNetV2 reads it: BigEarthNet-S2/ with
    one GeoTIFF per band, Reference_Maps/ (CLC codes; the patch's classes in stripes),
    metadata.parquet, and an empty BigEarthNet-S1/ (the class checks every folder exists)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import rasterio
    from rasterio.transform import from_origin

    from bigearth import nomenclature as nom

    rows = []
    (root / "BigEarthNet-S1").mkdir(parents=True, exist_ok=True)
    for r in records:
        pid = v2_id(r)
        product = pid.rsplit("_", 2)[0]
        write_band_geotiffs(r, root / "BigEarthNet-S2" / product / pid, pid)
        ulx, uly = r.bounds[0], r.bounds[1]
        codes = [nom.CLC_CODES[i] for i in np.flatnonzero(r.classes)] or [nom.CLC_CODES[0]]
        ref = np.repeat(np.array(codes, np.uint16), -(-120 // len(codes)))[:120][None].repeat(120, 0)
        m = root / "Reference_Maps" / product / pid
        m.mkdir(parents=True, exist_ok=True)
        with rasterio.open(m / f"{pid}_reference_map.tif", "w", driver="GTiff", width=120, height=120, count=1,
                           dtype="uint16", crs=r.crs, transform=from_origin(ulx, uly, 10, 10)) as ds:
            ds.write(ref, 1)
        rows.append({"patch_id": pid, "labels": nom.names_of(r.classes_19, nom.CLASS_NAMES_19), "split": "train",
                     "country": "Nowhere", "s1_name": "S1A_IW_GRDH_1SDV_" + pid, "s2v1_name": r.name,
                     "contains_seasonal_snow": False, "contains_cloud_or_shadow": False})
    pq.write_table(pa.Table.from_pylist(rows), root / "metadata.parquet")


class LmdbLikeConfigILM:
    """reBEN's LMDB read the way ConfigILM's BENv2 reader reads it (see the module docstring)."""

    def __init__(self, path: Path, keys: list[str], labels: dict):
        self.path, self.keys, self.labels, self.env = path, keys, labels, None

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        import lmdb
        import torch
        import torch.nn.functional as F
        from safetensors.numpy import load

        if self.env is None:  # opened in the process that reads (each DataLoader worker its own)
            self.env = lmdb.open(str(self.path), readonly=True, lock=False, meminit=False, readahead=False,
                                 max_spare_txns=16)
        key = self.keys[i]
        with self.env.begin(write=False, buffers=True) as txn:
            bands = load(bytes(txn.get(key.encode())))
        planes = []
        for b in S2_ORDER:
            a = torch.from_numpy(bands[b].astype(np.float32))
            if a.shape != (120, 120):
                a = F.interpolate(a[None, None], (120, 120), mode="bilinear", align_corners=True)[0, 0]
            planes.append(a)
        return torch.stack(planes), torch.from_numpy(self.labels[key])


class Hdf5Rows:
    """Ours, random access: one row of data_super and classes per sample, h5py opened per process."""

    def __init__(self, path: Path, rows):
        self.path, self.rows, self.f = path, rows, None

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        import h5py
        import hdf5plugin  # noqa: F401
        import torch
        if self.f is None:
            self.f = h5py.File(self.path, "r")
        r = int(self.rows[i])
        return torch.from_numpy(self.f["data_super"][r]), torch.from_numpy(self.f["classes"][r].astype(np.float32))


class OursTorchgeoPairs:
    """bigearth_torchgeo's BigEarthSR (a torchgeo NonGeoDataset over the archive) as (image, label)."""

    def __init__(self, path: Path):
        from bigearth_torchgeo import BigEarthSR
        self.ds = BigEarthSR(path, split="train")

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        s = self.ds[i]
        return s["image"], s["label"]


class TorchgeoPairs:
    """torchgeo's BigEarthNetV2 as (image, label), the same output as the other rows."""

    def __init__(self, root: Path):
        from torchgeo.datasets import BigEarthNetV2
        self.ds = BigEarthNetV2(root=str(root), split="train", bands="s2")

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        s = self.ds[i]
        return s["image"], s["label"]


def count_batches(loader) -> int:
    n = 0
    for x, y in loader:
        assert x.shape[1:] == (12, 120, 120) and y.shape[0] == x.shape[0]
        n += x.shape[0]
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/bench_peers")
    ap.add_argument("--products", type=int, default=4)
    ap.add_argument("--tile-size-m", type=int, default=24_000)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the 'workers' rows")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    import torch
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

    import shards
    from dataset_builder import archive

    work = Path(args.work)
    t0 = time.perf_counter()
    _, arch, index = prepare(work, args.products, args.tile_size_m)  # the same data as benchmarks/loaders.py
    split = "train"
    n = index["splits"][split]["samples"]
    import h5py
    with h5py.File(arch, "r") as f:
        rows = np.flatnonzero(f["split"].asstr()[:] == split)
    records = list(archive.iter_records(arch, rows))
    lmdb_s = write_lmdb(records, work / "reben.lmdb")
    write_v2_folder(records, work / "reben")
    keys = sorted(v2_id(r) for r in records)  # LMDB's own order: sequential reads walk its B-tree
    labels = {v2_id(r): r.classes_19.astype(np.float32) for r in records}
    print(f"data ready in {time.perf_counter() - t0:.0f} s: {n} training patches; reBEN LMDB written in {lmdb_s:.2f} s "
          f"({n / lmdb_s:,.0f} patches/s), {sum(p.stat().st_size for p in (work / 'reben.lmdb').iterdir()) / 1e6:.0f} MB",
          flush=True)

    maps = {"ours, HDF5": Hdf5Rows(arch, rows), "ours, torchgeo BigEarthSR": OursTorchgeoPairs(arch), "reBEN LMDB (ConfigILM's reading)": LmdbLikeConfigILM(work / "reben.lmdb", keys, labels),
            "torchgeo BigEarthNetV2": TorchgeoPairs(work / "reben")}
    for name, ds in maps.items():
        assert len(ds) == n, (name, len(ds), n)

    def map_loader(ds, order, workers):
        gen = torch.Generator().manual_seed(0)
        sampler = RandomSampler(ds, generator=gen) if order == "random" else SequentialSampler(ds)
        return DataLoader(ds, batch_size=BATCH, sampler=sampler, num_workers=workers,
                          persistent_workers=False, prefetch_factor=4 if workers else None)

    def shard_loader(order, workers):
        return shards.loader(work / "shards", split, batch_size=BATCH, num_workers=workers, pin_memory=False,
                             shuffle=1000 if order == "random" else 0, normalize=False)

    cases = []
    for workers in (0, args.workers):
        for order in ("sequential", "random"):
            cases.append(("ours, shards", order, workers, lambda o=order, w=workers: count_batches(shard_loader(o, w))))
            for name, ds in maps.items():
                cases.append((name, order, workers, lambda d=ds, o=order, w=workers: count_batches(map_loader(d, o, w))))
    results: dict = {}
    for _ in range(args.repeat):
        for name, order, workers, fn in cases:
            t = time.perf_counter()
            got = fn()
            dt = time.perf_counter() - t
            assert got == n, (name, order, workers, got, n)
            results.setdefault((name, order, workers), []).append(n / dt)
    best = {k: max(v) for k, v in results.items()}

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; {n} samples (12 x 120 x 120 + labels as tensors), "
          f"batches of {BATCH}, best of {args.repeat}, page cache warm")
    print("| reader | order | DataLoader workers | samples/s | x ours |")
    print("|---|---|---|---|---|")
    out = []
    for (name, order, workers), s in best.items():
        ours = best[("ours, shards" if order == "sequential" else "ours, HDF5", order, workers)]
        print(f"| {name} | {order} | {workers} | {s:,.0f} | {s / ours:.2f} |")
        out.append({"reader": name, "order": order, "workers": workers, "samples_per_s": s, "ratio_to_ours": s / ours})
    (work / "result.json").write_text(json.dumps({"lmdb_write_s": lmdb_s, "samples": n, "rows": out}, indent=1))


if __name__ == "__main__":
    main()
