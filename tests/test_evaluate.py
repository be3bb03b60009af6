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


def _drawn(monkeypatch):
    """The figures a function closes, kept open for inspection (pyplot.close is where they end)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    return figs


def test_the_f1_chart_names_its_split_and_the_classes_it_leaves_out_and_wraps_long_names(tmp_path, monkeypatch):
    import numpy as np

    from bigearth import nomenclature as nom
    from reference_train import evaluate
    from reference_train.metrics import score
    rng = np.random.default_rng(2)
    targets = (rng.random((80, 43)) < 0.3).astype(np.float32)
    absent = [0, 5, 29]  # 29: "Land principally occupied by agriculture, ...", the longest name, left in below
    targets[:, absent] = 0
    reports = score(rng.random((80, 43)).astype(np.float32), targets, 43)
    reports["checkpoint"] = {"split": "validation"}
    figs = _drawn(monkeypatch)
    evaluate.write_reports(tmp_path, reports)
    ax = figs[0].axes[0]
    title = ax.get_title()
    assert "43 classes" in title and "validation split" in title and "40 classes present; 3 absent" in title
    shown = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    present = [r for r in reports["43"]["per_class"] if r["support"] > 0]
    assert sorted(shown) == sorted(f"{r['class']} ({r['support']})" for r in present)  # whole names, none cut
    longest = max(nom.CLASS_NAMES, key=len)
    assert longest not in [nom.CLASS_NAMES[i] for i in absent] and len(longest) > 60
    assert any("\n" in t.get_text() for t in ax.get_yticklabels())
    fig19 = figs[1].axes[0]
    assert "19 classes, validation split" in fig19.get_title()


def test_training_curves_keep_legends_off_the_panels_with_whole_epochs(tmp_path, monkeypatch):
    from reference_train.train import plot_curves
    for epochs in (1, 7):
        figs = _drawn(monkeypatch)
        hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_micro_f1": e / 10, "val_macro_f1": e / 12,
                 "val_mAP": e / 11, "lr": 0.1 if e < 5 else 0.01} for e in range(1, epochs + 1)]
        plot_curves(hist, tmp_path / f"c{epochs}.png")
        fig = figs[-1]
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
            lo, hi = ax.get_xlim()
            assert hi - lo >= 1  # one epoch is not drawn on a scale of hundredths
            assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines())  # one point shows
            leg = ax.get_legend()
            if leg is not None:
                assert not leg.get_window_extent(r).overlaps(ax.get_window_extent(r))
        assert sum(ax.get_legend() is not None for ax in fig.axes) == 2


def test_evaluating_into_another_checkpoints_reports_says_so(built, tmp_path, capsys):
    import shards

    sdir = tmp_path / "shards"
    index = shards.write_shards(built[0] / ARCHIVE_NAME, sdir, "4MB", progress=False)
    split = next(iter(index["splits"]))
    args = argparse.Namespace(variant="super", labels=43, arch="resnet18", layers="1,1,1,1", dropout=0.0, seed=0)
    for name, epoch in (("a.pt", 2), ("b.pt", 5)):
        torch.manual_seed(epoch)
        model = build_model("super", 43, "resnet18", 0.0, parse_layers("1,1,1,1"))
        save_checkpoint(tmp_path / name, model, torch.optim.SGD(model.parameters(), lr=0.1), None, epoch, [], args)
    out = tmp_path / "eval"

    def run(ckpt):
        capsys.readouterr()
        assert cli(["evaluate", "--checkpoint", str(tmp_path / ckpt), "--data", str(sdir), "--split", split, "--out",
                    str(out), "--workers", "0", "--device", "cpu", "--quiet"]) == 0
        return [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]

    assert run("a.pt") == [] and run("a.pt") == []  # the same checkpoint scored again: nothing to say
    notes = run("b.pt")
    assert len(notes) == 1 and f"{out} held the reports of checkpoint {tmp_path / 'a.pt'} (epoch 2" in notes[0]
    assert f"replaced by those of {tmp_path / 'b.pt'} (epoch 5" in notes[0]
    assert json.loads((out / "report.json").read_text())["checkpoint"]["epoch"] == 5
