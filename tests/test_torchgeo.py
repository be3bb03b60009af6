"""bigearth_torchgeo: the torchgeo dataset against the archive it reads (independently, with h5py),
its checks, plot(), the data module's statistics, DataLoader workers, torchgeo's own
ClassificationTask under a Lightning Trainer, and the README's snippets."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("torchgeo")

import torch  # noqa: E402

from bigearth import nomenclature as nom  # noqa: E402
from bigearth.errors import InputError  # noqa: E402
from bigearth_torchgeo import BigEarthSR, BigEarthSRDataModule  # noqa: E402
from dataset_builder.build import ARCHIVE_NAME  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("torchgeo")  # one worker imports torchgeo and Lightning once


def _rows(path: Path, split: str) -> dict:
    """The archive's rows of one split, read with h5py alone."""
    with h5py.File(path) as f:
        sel = np.flatnonzero(f["split"].asstr()[:] == split)
        return {"name": list(f["name"].asstr()[:][sel]), "super": f["data_super"][:][sel],
                "classes": f["classes"][:][sel], "classes_19": f["classes_19"][:][sel]}


@pytest.mark.parametrize("split, ours", [("train", "train"), ("val", "validation"), ("validation", "validation")])
def test_samples_are_the_archive_rows(built, split, ours):
    rows = _rows(built[0] / ARCHIVE_NAME, ours)
    ds = BigEarthSR(built[0], split)
    assert len(ds) == len(rows["name"]) > 0 and ds.names == rows["name"]
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].dtype == torch.float32 and s["image"].shape == (12, 120, 120)
        assert s["label"].dtype == torch.int64 and s["label"].shape == (43,)
        np.testing.assert_array_equal(s["image"].numpy(), rows["super"][i].astype(np.float32))
        np.testing.assert_array_equal(s["label"].numpy(), rows["classes"][i])
    np.testing.assert_array_equal(ds[-1]["image"].numpy(), rows["super"][-1])
    with pytest.raises(IndexError, match=f"out of range for {len(ds)} patches"):
        ds[len(ds)]


def test_rgb_19_labels_and_transforms(built):
    path = built[0] / ARCHIVE_NAME
    rows = _rows(path, "train")
    seen = []

    def transform(sample):
        seen.append(1)
        return {**sample, "image": sample["image"] / 10000}

    ds = BigEarthSR(path, "train", bands="rgb", num_classes=19, transforms=transform)  # the archive file itself
    s = ds[3]
    # data_super is B01 B02 B03 B04 ...: red (B04), green (B03), blue (B02) are rows 3, 2, 1
    np.testing.assert_allclose(s["image"].numpy(), rows["super"][3][[3, 2, 1]] / 10000, rtol=1e-6)
    assert s["label"].shape == (19,) and seen == [1]
    np.testing.assert_array_equal(s["label"].numpy(), rows["classes_19"][3])
    assert ds.label_names(s["label"]) == [nom.CLASS_NAMES_19[i] for i in np.flatnonzero(rows["classes_19"][3])]


def test_bad_arguments_are_named(built, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        BigEarthSR(built[0], "tran")
    with pytest.raises(ValueError, match="bands must be one of"):
        BigEarthSR(built[0], bands="all")
    with pytest.raises(ValueError, match="num_classes must be 43 or 19"):
        BigEarthSR(built[0], num_classes=20)
    with pytest.raises(InputError, match=f"{tmp_path}: no {ARCHIVE_NAME} here"):
        BigEarthSR(tmp_path)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        BigEarthSRDataModule(built[0], batch_size=0)


def test_an_edited_patch_is_named_when_read(built, tmp_path):
    """A data_super row changed with h5py (its Fletcher-32 rewritten with it) is refused by name,
    as every other reader refuses it; the other patches still read."""
    path = tmp_path / ARCHIVE_NAME
    shutil.copyfile(built[0] / ARCHIVE_NAME, path)
    ds0 = BigEarthSR(path, "train")
    row = int(ds0.rows[2])
    with h5py.File(path, "r+") as f:
        cube = f["data_super"][row]
        cube[4, 7, 7] += 1
        f["data_super"][row] = cube
    ds = BigEarthSR(path, "train")
    with pytest.raises(InputError, match=f"patch {ds.names[2]}: its data_super differs from its digest"):
        ds[2]
    assert ds[1]["image"].shape == (12, 120, 120)


def test_plot_shows_the_patch_and_its_names(built):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ds = BigEarthSR(built[0], "train")
    s = ds[0]
    fig = ds.plot({**s, "prediction": ds[1]["label"]}, suptitle="a patch")
    assert isinstance(fig, Figure) and fig.get_suptitle() == "a patch"
    text = "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)
    for name in ds.label_names(s["label"]):
        assert name in text
    assert "Predictions:" in text and all(n in text for n in ds.label_names(ds[1]["label"]))
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (120, 120, 3) and 0 <= image.min() and image.max() <= 1
    # red is B04: the brightest-red pixel of the picture is among the brightest in the patch's B04
    b04 = s["image"][3].numpy()
    assert b04[np.unravel_index(np.argmax(image[..., 0]), b04.shape)] >= np.percentile(b04, 90)
    assert "Predictions:" not in "\n".join(t.get_text() for ax in ds.plot(s).axes for t in ax.texts)


def test_datamodule_normalises_with_the_training_split(built):
    """mean and std are the training split's, per band, as numpy computes them from the rows."""
    rows = _rows(built[0] / ARCHIVE_NAME, "train")["super"].astype(np.float64)
    dm = BigEarthSRDataModule(built[0], batch_size=5, num_workers=0)
    np.testing.assert_allclose(dm.mean.numpy(), rows.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(dm.std.numpy(), rows.std(axis=(0, 2, 3)), rtol=1e-4)
    dm.setup("fit")
    assert len(dm.train_dataset) == len(rows) and len(dm.val_dataset) == len(_rows(built[0] / ARCHIVE_NAME, "validation")["name"])
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (5, 12, 120, 120)
    normed = dm.aug(batch)["image"]  # what the task sees: (x - mean) / std
    expect = (batch["image"] - dm.mean[None, :, None, None]) / dm.std[None, :, None, None]
    torch.testing.assert_close(normed, expect, rtol=1e-5, atol=1e-5)


def test_workers_give_the_same_samples(built):
    ds = BigEarthSR(built[0], "train")
    ds[0]  # a handle opened in the parent must not be carried into the workers
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn")
    got = torch.cat([b["image"] for b in loader])
    torch.testing.assert_close(got, torch.stack([ds[i]["image"] for i in range(len(ds))]))


def _readme_snippet(name: str, root: Path) -> str:
    readme = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- snippet: {name} -->\n```python\n(.*?)```", readme, re.S)
    assert m, f"README snippet {name} not found"
    return m.group(1).replace("out/demo/dataset", str(root))


def test_readme_snippets_train_torchgeos_task(built, tmp_path, monkeypatch):
    """The README's snippets: `ds` is the training split, `dm` the data module, and torchgeo's
    ClassificationTask under Lightning's Trainer (here for 2 steps) changes the model's weights."""
    monkeypatch.chdir(tmp_path)  # Lightning writes lightning_logs/ into the working folder
    ns: dict = {}
    exec(_readme_snippet("torchgeo", built[0]), ns)
    assert isinstance(ns["ds"], BigEarthSR) and ns["ds"].names == _rows(built[0] / ARCHIVE_NAME, "train")["name"]
    assert isinstance(ns["dm"], BigEarthSRDataModule)
    # one process, and batches of 4: the fixture has 16 training patches, and torchgeo drops a short last batch
    ns["dm"].num_workers, ns["dm"].batch_size = 0, 4
    code = _readme_snippet("torchgeo-train", built[0])
    assert "Trainer(max_epochs=10)" in code
    code = code.replace("Trainer(max_epochs=10)", "Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, "
                        "accelerator='cpu', enable_progress_bar=False, logger=False, enable_checkpointing=False)")
    code = code.replace('model="resnet50"', 'model="resnet18"')  # the same task, a smaller network
    # the weights as the task starts, kept between the snippet's two statements
    code = code.replace("Trainer(", "before = {k: v.clone() for k, v in task.state_dict().items()}\nTrainer(", 1)
    first: dict = {}
    exec(code, ns, first)
    task = first["task"]
    assert task.hparams["in_channels"] == 12 and task.hparams["num_labels"] == 43
    changed = [k for k, v in task.state_dict().items() if v.dtype.is_floating_point
               and not torch.equal(v, first["before"][k])]
    assert any("conv1" in k for k in changed) and any("fc" in k for k in changed)
