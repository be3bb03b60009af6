"""The paper's evaluation, computed by scikit-learn: per-class precision, recall, F1 and support
(its Table 3), micro/macro/weighted/samples averages (its Table 2) and mAP, for the 43 classes and
the 19-class nomenclature. Averages are over the classes present in the split (support > 0); a
class absent from it has None for precision, recall, F1 and AP. mAP is the macro average of the
per-class AP over the classes present."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from bigearth import nomenclature as nom

AVERAGES = ("micro", "macro", "weighted", "samples")


def to_19(probs43: np.ndarray, targets43: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """43-class probabilities/targets -> 19-class ones (max over each class's CORINE members)."""
    member = nom.TO_19.astype(bool)  # (43, 19)
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
    # a class the split lacks has no recall, and no precision or F1 worth a number: None (blank in
    # the CSV, null in the JSON), never 0.0, which averaging the column would count as a failure
    rows = [{"class": names[c], **({"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c])} if s[c] else
                                   {"precision": None, "recall": None, "f1": None}),
             "support": int(s[c]), "ap": None if np.isnan(ap[c]) else float(ap[c])} for c in range(len(names))]
    avgs = {}
    for avg in AVERAGES:
        ap_, ar, af, _ = precision_recall_fscore_support(y, pred, average=avg, labels=present, zero_division=0)
        avgs[avg] = {"precision": float(ap_), "recall": float(ar), "f1": float(af)}
    return {"threshold": threshold, "samples": int(len(y)), "classes_present": int(len(present)), "per_class": rows,
            "averages": avgs, "mAP": float(np.nanmean(ap)) if len(present) else None,  # macro over the present
            "mAP_averaging": f"macro over the {len(present)} classes present",
            "micro_AP": float(average_precision_score(y[:, present], probs[:, present], average="micro"))
            if len(present) else None}


def summary(probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict:
    """The few numbers logged after each epoch."""
    rep = report(probs, targets, [str(i) for i in range(targets.shape[1])], threshold)
    return {"micro_f1": rep["averages"]["micro"]["f1"], "macro_f1": rep["averages"]["macro"]["f1"],
            "samples_f1": rep["averages"]["samples"]["f1"], "mAP": rep["mAP"]}


def score(probs: np.ndarray, targets: np.ndarray, num_classes: int, threshold: float = 0.5) -> dict:
    """The reports of one split: 43 and 19 classes for a 43-class model, 19 for a 19-class one."""
    if num_classes == 43:
        p19, t19 = to_19(probs, targets)
        return {"43": report(probs, targets, nom.CLASS_NAMES, threshold), "19": report(p19, t19, nom.CLASS_NAMES_19, threshold)}
    return {"19": report(probs, targets, nom.CLASS_NAMES_19, threshold)}
