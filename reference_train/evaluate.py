"""Evaluation of a checkpoint on a split, as the paper reports it: per-class precision, recall,
F1 and support (its Table 3), micro/macro/weighted/samples averages (its Table 2) and mAP,
for the 43 classes and the 19-class nomenclature (``metrics.py`` computes them with scikit-learn).

    bigearth-sr evaluate --checkpoint runs/demo/checkpoint.pt --data out/demo/shards \\
        --split test --out runs/demo/eval_test

Writes ``per_class_43.csv``/``.md``, ``per_class_19.csv``/``.md``, ``report.json``,
``f1_43.png``/``f1_19.png`` and ``predictions.npz`` (the patch names, probabilities and targets
the tables are computed from, so anyone can recompute them). Averages are over the classes present in the split (support > 0):
a class the split lacks has no recall to average. A 43-class model is scored on the 19 classes
by mapping (a 19-class label is predicted when any of its CORINE classes is, with the highest
of their probabilities); a 19-class model is scored on the 19 only.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from bigearth.files import atomic_path, folder_lock, output_folder, sha256_file, write_text
from bigearth.options import HelpFormatter, fraction, nonneg_int, positive_int, split_name

NOMENCLATURES = ("43", "19")
PREDICTIONS = "predictions.npz"


def write_predictions(path: Path, names, probs, targets, threshold: float) -> None:
    """The scored predictions as plain arrays (``np.load(path)`` reads them without pickle)."""
    import numpy as np
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, names=np.asarray(names, dtype=str), probs=probs.astype(np.float32),
                            targets=targets.astype(np.uint8), threshold=np.float64(threshold))


def tables_text(reports: dict, key: str = "43", baseline: tuple[dict, str] | None = None) -> str:
    """The paper's Table 2 (averages, micro first: the averaging its F1 implies) and Table 3
    (per class precision/recall/F1/support, classes present) layouts as text; ``baseline``
    (micro P/R/F1, description) is printed beside Table 2."""
    rep = reports[key]
    c = reports.get("checkpoint", {})
    lines = [f"Table 2 layout: {key} classes, {c.get('split', '?')} split, {rep['samples']} patches, "
             f"threshold {rep['threshold']}", f"  {'average':<28}{'precision':>10}{'recall':>10}{'F1':>10}"]
    for name, v in rep["averages"].items():
        lines.append(f"  {name:<28}{v['precision']:>10.3f}{v['recall']:>10.3f}{v['f1']:>10.3f}")
    if baseline is not None:
        b, how = baseline
        lines.append(f"  {'label-frequency baseline':<28}{b['precision']:>10.3f}{b['recall']:>10.3f}{b['f1']:>10.3f}"
                     f"   (micro; {how})")
    if rep.get("mAP") is not None:
        lines.append(f"  macro mAP {rep['mAP']:.3f} (AP averaged over the {rep['classes_present']} classes present)")
    rows = [r for r in rep["per_class"] if r["support"] > 0]
    width = max(len(r["class"]) for r in rows) if rows else 10
    lines += ["", f"Table 3 layout: per class ({len(rows)} of {len(rep['per_class'])} classes present in the split)",
              f"  {'class':<{width}}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>9}"]
    lines += [f"  {r['class']:<{width}}{r['precision']:>10.3f}{r['recall']:>10.3f}{r['f1']:>10.3f}{r['support']:>9d}"
              for r in rows]
    return "\n".join(lines)


def write_reports(out: Path, reports: dict) -> None:
    """CSV + Markdown per nomenclature, one JSON (everything in ``reports``, the run's details
    included), per-class F1 bar charts; each written atomically, each once."""
    out = output_folder(out)
    for key, rep in ((k, v) for k, v in reports.items() if k in NOMENCLATURES):
        with atomic_path(out / f"per_class_{key}.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["class", "precision", "recall", "f1", "support", "ap"])
            w.writeheader()
            w.writerows(rep["per_class"])
        lines = [f"### {key} classes ({rep['samples']} patches, threshold {rep['threshold']})", "",
                 "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {r['class']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
                  for r in rep["per_class"] if r["support"] > 0]
        lines += ["", "| average | precision | recall | F1 |", "|---|---|---|---|"]
        lines += [f"| {a} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} |" for a, v in rep["averages"].items()]
        if rep["mAP"] is not None:
            lines += ["", f"macro mAP (AP averaged over the {rep['classes_present']} classes present) {rep['mAP']:.3f}; "
                          f"micro AP {rep['micro_AP']:.3f}"]
        absent = [r["class"] for r in rep["per_class"] if r["support"] == 0]
        if absent:
            lines += ["", f"{len(absent)} class(es) absent from the split (blank in the CSV, null in the JSON): "
                          + ", ".join(absent)]
        write_text(out / f"per_class_{key}.md", "\n".join(lines) + "\n")
        split = reports.get("checkpoint", {}).get("split")
        plot_f1(rep, out / f"f1_{key}.png", f"per-class F1, {key} classes" + (f", {split} split" if split else ""))
    write_text(out / "report.json", json.dumps(reports, indent=1))


def f1_title(rep: dict, title: str) -> str:
    """The chart's title says how many of the nomenclature's classes it shows, and that the others
    are left out because the split lacks them (a bar of "43 classes" counted short reads as a bug)."""
    present = sum(r["support"] > 0 for r in rep["per_class"])
    absent = len(rep["per_class"]) - present
    return title + (f"\n{present} classes present; {absent} absent from the split, left out" if absent else "")


def plot_f1(rep: dict, path: Path, title: str) -> None:
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = sorted((r for r in rep["per_class"] if r["support"] > 0), key=lambda r: r["f1"])
    # CORINE's longest names run to 80 characters: wrap them rather than cut a class beyond recognition
    labels = [textwrap.fill(f"{r['class']} ({r['support']})", 44) for r in rows]
    lines = sum(lab.count("\n") + 1 for lab in labels)
    fig, ax = plt.subplots(figsize=(10, 0.24 * lines + 0.1 * len(rows) + 1.6))
    ax.barh(range(len(rows)), [r["f1"] for r in rows], color="tab:green")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    zero = [i for i, r in enumerate(rows) if r["f1"] == 0]
    if zero:  # a bar of length 0 is invisible: mark it, so it reads as a score of 0, not a missing class
        ax.scatter([0.0] * len(zero), zero, marker="x", color="tab:red", zorder=3, label="F1 = 0", clip_on=False)
        for i in zero:
            ax.text(0.012, i, "0", va="center", color="tab:red", fontsize=8)
    ax.axvline(rep["averages"]["micro"]["f1"], color="k", ls="--", lw=1, label="micro F1")
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (support in brackets)")
    ax.set_title(f1_title(rep, title))
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def replaced_reports(out: Path, scored: dict) -> str | None:
    """What a rerun's reports replace in ``out`` when they are another checkpoint's (or another
    split's, or other data's): said, since the folder's name may be all that tells two runs apart."""
    try:
        old = json.loads((out / "report.json").read_text()).get("checkpoint") or {}
    except (OSError, ValueError, AttributeError):
        return None
    what = []
    if old.get("sha256") != scored["sha256"]:
        what.append(f"checkpoint {old.get('path')} (epoch {old.get('epoch')}, sha256 {str(old.get('sha256'))[:12]}…)")
    if old.get("split") != scored["split"]:
        what.append(f"split {old.get('split')!r}")
    if old.get("data_sha256") != scored["data_sha256"]:
        what.append("other shards")
    if not what:
        return None
    return (f"{out} held the reports of {', '.join(what)}; they are replaced by those of {scored['path']} (epoch "
            f"{scored['epoch']}, the {scored['split']} split)")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, add_help=add_help)
    ap.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `bigearth-sr train`")
    ap.add_argument("--data", required=True, help="shard folder (with index.json) written by `bigearth-sr shards`")
    ap.add_argument("--split", type=split_name, default="test",
                    help="split to score: train, validation (or val) or test")
    ap.add_argument("--threshold", type=fraction, default=0.5, help="a class is predicted when its probability is at least this")
    ap.add_argument("--out", required=True, help="folder for the tables, report.json, plots and predictions.npz")
    ap.add_argument("--batch-size", type=positive_int, default=128, help="images per batch")
    ap.add_argument("--workers", type=nonneg_int, default=None,
                    help="DataLoader workers (default: half the usable cores, at most 4)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--quiet", action="store_true", help="print only the summary line, not the tables")
    return ap


def main(args) -> int:
    """Evaluate, holding --out for the run: a second evaluation into it is refused, naming this one."""
    with folder_lock(args.out, False, "evaluation"):
        return evaluate_run(args)


def evaluate_run(args) -> int:
    import torch

    import shards
    from reference_train.metrics import score
    from reference_train.checkpoint import load_weights, read_checkpoint
    from reference_train.model import build_model, parse_layers
    from reference_train.predict import predict

    from bigearth.distinfo import size_to_node
    output_folder(args.out)  # before the checkpoint is scored
    _, args.workers, _, _ = size_to_node(workers=args.workers, local_size=1)  # one process: the whole node
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    index = shards.read_index(args.data)[0]  # the data checked (its digests, its entries) before the model is read
    state = read_checkpoint(Path(args.checkpoint))
    targs = state["args"]
    model = build_model(targs["variant"], targs["labels"], targs["arch"], targs["dropout"],
                        parse_layers(targs.get("layers")))
    load_weights(Path(args.checkpoint), model, state["model"])
    model.to(device)
    loader = shards.loader(args.data, args.split, batch_size=args.batch_size, num_workers=args.workers, shuffle=0,
                           variant=targs["variant"], labels=targs["labels"], normalize=False, rank=0, world=1,
                           with_meta=True)
    normalizer = shards.Normalizer(index, targs["variant"]).to(device)
    probs, targets, names = predict(model, loader, normalizer, device, with_names=True)
    reports = score(probs, targets, targs["labels"], args.threshold)
    # what was scored, by content: a rerun can tell whether these tables are still this checkpoint's
    reports["checkpoint"] = {"path": str(args.checkpoint), "epoch": state["epoch"], "split": args.split,
                             "sha256": sha256_file(args.checkpoint),
                             "data_sha256": sha256_file(Path(args.data) / shards.INDEX_NAME)}
    out = output_folder(args.out)
    if (note := replaced_reports(out, reports["checkpoint"])) is not None:
        print(f"note: {note}", file=sys.stderr, flush=True)
    write_predictions(out / PREDICTIONS, names, probs, targets, args.threshold)
    write_reports(out, reports)
    if not args.quiet:
        for key in NOMENCLATURES:
            if key in reports:
                print(tables_text(reports, key) + "\n")
    for key in NOMENCLATURES:
        if key in reports:
            a = reports[key]["averages"]
            print(f"{key} classes: micro F1 {a['micro']['f1']:.3f}  macro F1 {a['macro']['f1']:.3f}  "
                  f"samples F1 {a['samples']['f1']:.3f}  macro mAP {reports[key]['mAP']:.3f}")
    print(f"reports in {args.out}")
    return 0


if __name__ == "__main__":
    from bigearth.errors import run_command
    raise SystemExit(run_command(main, get_args_parser().parse_args()))
