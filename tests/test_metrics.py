"""reference_train/metrics.py: per-class and averaged scores against an independent computation."""
from __future__ import annotations

import numpy as np
import pytest

from bigearth import nomenclature as nom
from reference_train.metrics import report, score, to_19


def independent_prf(y: np.ndarray, p: np.ndarray):
    """Per-class tp, fp, fn, precision, recall, F1 of 0/1 matrices, by counting."""
    tp = (y & p).sum(0).astype(float)
    fp = ((1 - y) & p).sum(0).astype(float)
    fn = (y & (1 - p)).sum(0).astype(float)
    prec = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    rec = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=prec + rec > 0)
    return tp, fp, fn, prec, rec, f1


def _independent_ap(y: np.ndarray, s: np.ndarray) -> float:
    order = np.argsort(-s, kind="stable")
    y = y[order]
    hits = np.cumsum(y)
    return float((hits / np.arange(1, len(y) + 1))[y == 1].sum() / y.sum())


def test_evaluation_matches_an_independent_computation(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    targets = (rng.random((n, 43)) < 0.15).astype(np.int64)
    targets[:, 5] = 0  # a class absent from the split
    probs = np.clip(targets * 0.55 + rng.random((n, 43)) * 0.5, 0, 1)
    probs += rng.random((n, 43)) * 1e-6  # no ties: AP is then unambiguous
    rep = report(probs, targets, nom.CLASS_NAMES, 0.5)
    pred = (probs >= 0.5).astype(np.int64)
    tp, fp, fn, prec, rec, f1 = independent_prf(targets, pred)
    present = targets.sum(0) > 0
    for c, row in enumerate(rep["per_class"]):
        assert row["support"] == targets[:, c].sum()
        if not present[c]:  # absent: no figure at all, not a 0.0 that a column average would count
            assert row["precision"] is None and row["recall"] is None and row["f1"] is None and row["ap"] is None
            continue
        assert row["precision"] == pytest.approx(prec[c]) and row["recall"] == pytest.approx(rec[c])
        assert row["f1"] == pytest.approx(f1[c])
        if present[c]:
            assert row["ap"] == pytest.approx(_independent_ap(targets[:, c], probs[:, c]))
    micro_p, micro_r = tp[present].sum() / (tp[present].sum() + fp[present].sum()), tp[present].sum() / (tp[present].sum() + fn[present].sum())
    assert rep["averages"]["micro"]["f1"] == pytest.approx(2 * micro_p * micro_r / (micro_p + micro_r))
    assert rep["averages"]["macro"]["f1"] == pytest.approx(f1[present].mean())
    w = targets.sum(0)[present]
    assert rep["averages"]["weighted"]["f1"] == pytest.approx((f1[present] * w).sum() / w.sum())
    inter = (targets[:, present] & pred[:, present]).sum(1)
    denom = targets[:, present].sum(1) + pred[:, present].sum(1)
    assert rep["averages"]["samples"]["f1"] == pytest.approx(np.where(denom > 0, 2 * inter / np.maximum(denom, 1), 0).mean())
    assert rep["mAP_averaging"] == f"macro over the {present.sum()} classes present"
    # the CSV's F1 column, averaged as a spreadsheet would (blanks skipped), is the macro F1
    assert np.mean([r["f1"] for r in rep["per_class"] if r["f1"] is not None]) == pytest.approx(rep["averages"]["macro"]["f1"])
    assert rep["mAP"] == pytest.approx(np.mean([_independent_ap(targets[:, c], probs[:, c]) for c in np.flatnonzero(present)]))
    p19, t19 = to_19(probs, targets)
    for j, (_, codes) in enumerate(nom.CLASSES_19):
        cols = [nom.CLC_CODES.index(code) for code in codes]
        np.testing.assert_array_equal(p19[:, j], probs[:, cols].max(1))
        np.testing.assert_array_equal(t19[:, j], targets[:, cols].max(1))
    reps = score(probs, targets, 43)
    from reference_train.evaluate import write_reports
    write_reports(tmp_path, reps)
    for name in ("per_class_43.csv", "per_class_43.md", "per_class_19.csv", "per_class_19.md", "report.json",
                 "f1_43.png", "f1_19.png"):
        assert (tmp_path / name).stat().st_size > 0
    md = (tmp_path / "per_class_43.md").read_text()
    assert nom.CLASS_NAMES[0] in md and nom.CLASS_NAMES[5] not in md.split("| average")[0]
