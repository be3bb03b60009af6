"""Evaluation of a checkpoint on a split, as the paper reports it: per-class precision, recall,
F1 and support (its Table 3), micro/macro/weighted/samples averages (its Table 2) and mAP,
for the 43 classes and the 19-class nomenclature. scikit-learn computes every metric.

    python -m reference_train.evaluate --checkpoint runs/demo/checkpoint.pt --data out/demo/shards \\
        --split test --out runs/demo/eval_test

Writes ``per_class_43.csv``/``.md``, ``per_class_19.csv``/``.md``, ``report.json`` and
``f1_43.png``/``f1_19.png``. Averages are over the classes present in the split (support > 0):
a class the split lacks has no recall to average. A 43-class model is scored on the 19 classes
by mapping (a 19-class label is predicted when any of its CORINE classes is, with the highest
of their probabilities); a 19-class model is scored on the 19 only.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from bigearth import nomenclature as nom
from bigearth.options import fraction, nonneg_int, positive_int

AVERAGES = ("micro", "macro", "weighted", "samples")


def to_19(probs43: np.ndarray, targets43: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """43-class probabilities/targets -> 19-class ones (max over each class's CORINE members)."""
    member = nom._TO_19.astype(bool)  # (43, 19)
    probs = np.stack([probs43[:, member[:, j]].max(axis=1) if member[:, j].any() else np.zeros(len(probs43))
                      for j in range(member.shape[1])], axis=1)
    return probs, nom.to_19(targets43.astype(np.uint8)).astype(np.float32)


def report(probs: np.ndarray, targets: np.ndarray, names, threshold: float = 0.5) -> dict:
    """Per-class rows and averages for one nomenclature."""
    y = targets.astype(np.int64)
    pred = (probs >= threshold).astype(np.int64)
    present = np.flatnonzero(y.sum(axis=0) > 0)
    p, r, f, s = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    ap = np.full(len(names), np.nan)
    for c in present:
        ap[c] = average_precision_score(y[:, c], probs[:, c])
    rows = [{"class": names[c], "precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]),
             "support": int(s[c]), "ap": None if np.isnan(ap[c]) else float(ap[c])} for c in range(len(names))]
    avgs = {}
    for avg in AVERAGES:
        ap_, ar, af, _ = precision_recall_fscore_support(y, pred, average=avg, labels=present, zero_division=0)
        avgs[avg] = {"precision": float(ap_), "recall": float(ar), "f1": float(af)}
    return {"threshold": threshold, "samples": int(len(y)), "classes_present": int(len(present)), "per_class": rows,
            "averages": avgs, "mAP": float(np.nanmean(ap)) if len(present) else None,
            "micro_AP": float(average_precision_score(y[:, present], probs[:, present], average="micro"))
            if len(present) else None}


def summary(probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict:
    """The few numbers logged after each epoch."""
    rep = report(probs, targets, [str(i) for i in range(targets.shape[1])], threshold)
    return {"micro_f1": rep["averages"]["micro"]["f1"], "macro_f1": rep["averages"]["macro"]["f1"],
            "samples_f1": rep["averages"]["samples"]["f1"], "mAP": rep["mAP"]}


def write_reports(out: Path, reports: dict) -> None:
    """CSV + Markdown per nomenclature, one JSON, per-class F1 bar charts; each written atomically."""
    out.mkdir(parents=True, exist_ok=True)

    def atomic(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    for key, rep in reports.items():
        tmp = out / f"per_class_{key}.csv.tmp"
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["class", "precision", "recall", "f1", "support", "ap"])
            w.writeheader()
            w.writerows(rep["per_class"])
        os.replace(tmp, out / f"per_class_{key}.csv")
        lines = [f"### {key} classes ({rep['samples']} patches, threshold {rep['threshold']})", "",
                 "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {r['class']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
                  for r in rep["per_class"] if r["support"] > 0]
        lines += ["", "| average | precision | recall | F1 |", "|---|---|---|---|"]
        lines += [f"| {a} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} |" for a, v in rep["averages"].items()]
        if rep["mAP"] is not None:
            lines += ["", f"mAP (macro over {rep['classes_present']} classes present) {rep['mAP']:.3f}; "
                          f"micro AP {rep['micro_AP']:.3f}"]
        atomic(out / f"per_class_{key}.md", "\n".join(lines) + "\n")
        plot_f1(rep, out / f"f1_{key}.png", f"per-class F1, {key} classes")
    atomic(out / "report.json", json.dumps(reports, indent=1))


def plot_f1(rep: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = sorted((r for r in rep["per_class"] if r["support"] > 0), key=lambda r: r["f1"])
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.2))
    ax.barh([f"{r['class'][:48]} ({r['support']})" for r in rows], [r["f1"] for r in rows], color="tab:green")
    ax.axvline(rep["averages"]["micro"]["f1"], color="k", ls="--", lw=1, label="micro F1")
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (support in brackets)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def evaluate(probs: np.ndarray, targets: np.ndarray, num_classes: int, threshold: float = 0.5) -> dict:
    if num_classes == 43:
        p19, t19 = to_19(probs, targets)
        return {"43": report(probs, targets, nom.CLASS_NAMES, threshold), "19": report(p19, t19, nom.CLASS_NAMES_19, threshold)}
    return {"19": report(probs, targets, nom.CLASS_NAMES_19, threshold)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="shard folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threshold", type=fraction, default=0.5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=positive_int, default=128)
    ap.add_argument("--workers", type=nonneg_int, default=2)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = ap.parse_args(argv)

    import torch

    import shards
    from reference_train.model import build_model, parse_layers
    from reference_train.train import load_weights, predict, read_checkpoint
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    state = read_checkpoint(Path(args.checkpoint))
    targs = state["args"]
    model = build_model(targs["variant"], targs["labels"], targs["arch"], targs["dropout"],
                        parse_layers(targs.get("layers")))
    load_weights(Path(args.checkpoint), model, state["model"])
    model.to(device)
    index = shards.read_index(args.data)[0]
    loader = shards.loader(args.data, args.split, batch_size=args.batch_size, num_workers=args.workers, shuffle=0,
                           variant=targs["variant"], labels=targs["labels"], normalize=False, rank=0, world=1)
    normalizer = shards.Normalizer(index, targs["variant"]).to(device)
    probs, targets = predict(model, loader, normalizer, device)
    reports = evaluate(probs, targets, targs["labels"], args.threshold)
    reports["checkpoint"] = {"path": str(args.checkpoint), "epoch": state["epoch"], "split": args.split}
    write_reports(Path(args.out), {k: v for k, v in reports.items() if k in ("43", "19")})
    (Path(args.out) / "report.json").write_text(json.dumps(reports, indent=1))
    for key in ("43", "19"):
        if key in reports:
            a = reports[key]["averages"]
            print(f"{key} classes: micro F1 {a['micro']['f1']:.3f}  macro F1 {a['macro']['f1']:.3f}  "
                  f"samples F1 {a['samples']['f1']:.3f}  mAP {reports[key]['mAP']:.3f}")
    print(f"reports in {args.out}")
    return 0


if __name__ == "__main__":
    from bigearth.errors import run_command
    raise SystemExit(run_command(main))
