from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from dataset_builder.synth_ben import make_v2, v2_product_of, write_ben, write_lists  # noqa: F401  (the tests' writers)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("BIGEARTH_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def fixtures_dir(sub: str) -> Path:
    path = FIXTURES / sub
    if not path.exists():
        pytest.skip(f"real fixtures not found at {path} (see ../shared/fixtures/README.md)")
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Three small synthetic products (4.8 km tiles: 16 patches each), old and new baselines, with truth."""
    from dataset_builder.synth import SynthConfig, write_product

    out = tmp_path_factory.mktemp("synth")
    for tile, date, baseline in (("T33UUP", "20170613T101031", "05.00"), ("T29UPU", "20170617T113321", "02.14"),
                                 ("T35VPK", "20180204T094159", "05.09")):
        write_product(SynthConfig(tile=tile, date=date, baseline=baseline, tile_size_m=4800, seed=3,
                                  cloud_cover=0.15, snow_cover=0.08, nodata_cover=0.05, write_truth=True), out)
    return out


@pytest.fixture(scope="session")
def products(synth_dir) -> list[Path]:
    return sorted(synth_dir.glob("*.SAFE"))


@pytest.fixture(scope="session")
def built(synth_dir, products, tmp_path_factory):
    """One reference build of the synthetic products (1 worker)."""
    from dataset_builder.build import BuildConfig, build

    out = tmp_path_factory.mktemp("built")
    # bilinear: the reference the mechanics tests (and TFDS's super_bilinear) compare with; the DSen2
    # default is built in tests/test_sr_build.py
    cfg = BuildConfig(out_dir=str(out), upsampling="bilinear", clc=sorted(str(p) for p in synth_dir.glob("CLC_*.tif")),
                      progress=False)
    manifest = build(products, cfg)
    return out, manifest, cfg


def copy_products(products, dest: Path) -> list[Path]:
    out = []
    for p in products:
        shutil.copytree(p, dest / p.name)
        out.append(dest / p.name)
    return out


def flip_byte(path, offset: int) -> None:
    """One bit of a file flipped in place: damage that may still decode."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x01]))


def archive_contents(path) -> dict:
    """Everything an archive holds that must not depend on how it was built (not the config attr)."""
    out = {}
    with h5py.File(path, "r") as f:
        for key in f:
            out[key] = f[key][:]
            for a, v in f[key].attrs.items():
                out[f"{key}@{a}"] = np.asarray(v)
    return out


def assert_same_archive(a, b) -> None:
    ca, cb = archive_contents(a), archive_contents(b)
    assert sorted(ca) == sorted(cb)
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)


# Tests that launch process groups (mpirun, torchrun, horovodrun) run on one xdist worker, one
# after another: on 2 cores, launchers started side by side were seen to fail to start (mpirun
# exiting 2 with no output while horovodrun ran beside it). Every other file stays on one worker.
_LAUNCHERS = {"test_mpi", "test_train", "test_demo"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        item.add_marker(pytest.mark.xdist_group("launchers" if module in _LAUNCHERS else module))


# shards of the reference build, shared by the tests of shards/*
SHARD_BYTES = 1_100_000  # two samples per shard


@pytest.fixture(scope="session")
def written(built, tmp_path_factory):
    """The reference build written as shards (two samples each, seed 7): (archive, manifest, folder, index)."""
    import shards
    from dataset_builder.build import ARCHIVE_NAME

    out, manifest, _ = built
    sdir = tmp_path_factory.mktemp("shards")
    index = shards.write_shards(out / ARCHIVE_NAME, sdir, SHARD_BYTES, seed=7, progress=False)
    return out / ARCHIVE_NAME, manifest, sdir, index


def archive_by_name(path) -> dict:
    from dataset_builder import archive
    return {r.name: r for r in archive.iter_records(path)}


def read_tar(path) -> dict[str, dict[str, bytes]]:
    """Independent of the reader: Python's tarfile, members grouped by the name before the first dot."""
    import tarfile

    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            key, ext = m.name.split(".", 1)
            out.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return out


def keys_of(sdir, split, rank, world, workers, **kw) -> list[str]:
    """The patch names one rank reads in an epoch, through a DataLoader with ``workers``."""
    import torch

    import shards
    ds = shards.load(sdir, split, rank=rank, world=world, with_meta=True, normalize=False, **kw)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    return [m["name"] for _, _, m in dl]


# --------------------------------------------------------------------------- BigEarthNet v2 layout
