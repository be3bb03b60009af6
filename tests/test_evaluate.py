"""The evaluation command: reports written once and atomically, with the run's details."""
import argparse
import json
from pathlib import Path

import torch

from bigearth_cli.cli import main as cli
from dataset_builder.build import ARCHIVE_NAME
from reference_train.checkpoint import save_checkpoint
from reference_train.model import build_model, parse_layers


def test_report_json_is_written_once_atomically_with_the_checkpoint_details(built, tmp_path, monkeypatch):
    import shards

    sdir = tmp_path / "shards"
    index = shards.write_shards(built[0] / ARCHIVE_NAME, sdir, "4MB", progress=False)
    split = next(iter(index["splits"]))
    args = argparse.Namespace(variant="super", labels=43, arch="resnet18", layers="1,1,1,1", dropout=0.0, seed=0)
    model = build_model("super", 43, "resnet18", 0.0, parse_layers("1,1,1,1"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(tmp_path / "checkpoint.pt", model, opt, None, 3, [], args)

    written = []
    real = Path.write_text

    def spy(self, *a, **k):
        written.append(self.name)
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", spy)
    out = tmp_path / "eval"
    assert cli(["evaluate", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--data", str(sdir), "--split", split,
                "--out", str(out), "--workers", "0", "--device", "cpu"]) == 0
    assert "report.json" not in written, written  # only ever through a temporary name, renamed
    assert sum(n.startswith(".report.json.") for n in written) == 1, written
    rep = json.loads((out / "report.json").read_text())
    assert rep["checkpoint"]["epoch"] == 3 and rep["checkpoint"]["split"] == split
    assert rep["43"]["samples"] == index["splits"][split]["samples"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_absent_classes_are_blank_and_zero_f1_is_marked(tmp_path, monkeypatch):
    import csv

    import matplotlib.axes
    import numpy as np

    from bigearth import nomenclature as nom
    from reference_train import evaluate
    from reference_train.metrics import score
    rng = np.random.default_rng(1)
    targets = (rng.random((60, 43)) < 0.2).astype(np.float32)
    targets[:, :3] = 0  # absent from the split
    probs = rng.random((60, 43)).astype(np.float32)
    probs[:, 10] = 0.0  # present, never predicted: F1 0
    reports = score(probs, targets, 43)
    marked = []
    real = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", lambda self, x, y, **k: marked.append((list(x), k.get("label")))
                        or real(self, x, y, **k))
    evaluate.write_reports(tmp_path, reports)
    with open(tmp_path / "per_class_43.csv") as fh:
        rows = {r["class"]: r for r in csv.DictReader(fh)}
    for c in nom.CLASS_NAMES[:3]:
        assert rows[c]["support"] == "0" and rows[c]["f1"] == rows[c]["precision"] == rows[c]["recall"] == ""
    assert float(rows[nom.CLASS_NAMES[10]]["f1"]) == 0.0
    assert json.loads((tmp_path / "report.json").read_text())["43"]["per_class"][0]["f1"] is None
    zero = sum(1 for r in reports["43"]["per_class"] if r["f1"] == 0)
    assert ([0.0] * zero, "F1 = 0") in marked  # one marker per F1 = 0 bar, in the 43-class chart
    assert "macro mAP" in evaluate.tables_text(reports, "43")
