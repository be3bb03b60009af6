"""``bigearth-sr sr-eval``: super-resolution quality across scenes.

Every input (MAT crops, BigEarthNet patch folders, Level-2A products, or folders of them) is
read and grouped into scenes (``scenes.py``: one acquisition is one scene, whatever its form).
Each piece goes through Wald's protocol at 2x and, where it is large enough
(``wald.min_side``), at 6x: every band degraded by the ratio, super-resolved back, compared
with the original 20 m or 60 m bands; and at full resolution where a 10 m truth of the coarse
bands exists (synthetic products written with ``--truth``). The report has one row per scene
and one pooled row per protocol and method (RMSE, SRE, SAM, and the ratio to bicubic), counts
the scenes and the 120 x 120 patches on which a method is worse than bicubic by more than
``--slack`` DN, and splits the patches by land cover (``scenes.patch_cover``).

A scene the DSen2 weights were trained or validated on (their bundle names them) is left out
of the report and listed as such: a quality figure counts only on scenes no training or tuning
step saw. ``--allow-seen`` keeps them, marked.

The JSON holds sums (squared errors, reference means, spectral angles, counts), so reports of
several runs (the folds of a cross-validation) merge exactly (:func:`merge_reports`).
"""
from __future__ import annotations

import contextlib

import csv
import json
from pathlib import Path

import numpy as np
import rasterio

from bigearth.errors import InputError, OptionError
from bigearth.files import atomic_path, content_digest, file_digests, folder_lock, output_folder, write_text
from bigearth.record import BANDS_20M, BANDS_60M, BANDS_SUPER, PATCH_PX

from dataset_builder import upsample
from . import metrics, scenes as scenes_mod, wald

VIEW = 240  # side of the figure's window, in pixels of the reference grid
FIGURE_BANDS = {"2x": ("B11", "B8A", "B05"), "6x": ("B09", "B01", "B01"), "full": ("B11", "B8A", "B05")}
RATIO = {"2x": 2, "6x": 6, "full": 1}


# --------------------------------------------------------------------------- one piece

def too_small(shape, s: int) -> str | None:
    """Why a piece of 10 m size ``shape`` is too small for the ratio-s protocol, or None."""
    side = wald.degraded_side(shape, s)
    if side >= wald.min_side(s):
        return None
    need = wald.min_side(s) * s
    return (f"{s}x needs at least {need} x {need} px at 10 m (a degraded {s * 10} m input of "
            f"{wald.min_side(s) // s} px a side); this is {shape[0]} x {shape[1]}")


def protocols(cubes: dict, truth: np.ndarray | None, mode: str):
    """(name, input cubes, reference (bands, H, W), band ids) for each protocol that applies."""
    for name, s, key, bands in (("2x", 2, "im20", BANDS_20M), ("6x", 6, "im60", BANDS_60M)):
        if too_small(cubes["im10"].shape[1:], s):
            continue
        sc = wald.trim(cubes, 36 if s == 6 else 12)
        low = {k: wald.degrade(sc[k], b, s, mode) for k, b in wald.CUBES}
        yield name, low, sc[key], bands
    if truth is not None:
        sc = wald.trim(cubes)
        h, w = sc["im10"].shape[1:]
        ref = np.stack([truth[BANDS_SUPER.index(b), :h, :w] for b in upsample.BANDS_SR])
        yield "full", sc, ref, upsample.BANDS_SR


def evaluate_piece(piece, ups: dict, truth=None, mode="gauss"):
    """{protocol: {"bands", "sums": {method: sums}, "patches": [{cover, source, rmse: {method}}],
    "held_px": {method: values its guard's range bound moved}}}, images."""
    out, images = {}, {}
    for name, low, ref, bands in protocols(piece.cubes, truth, mode):
        idx = [upsample.BANDS_SR.index(b) for b in bands]
        # a method that adapts learns from this piece's input alone (degraded once more), never its reference
        inp = (low["im10"], low["im20"], low["im60"])
        ests, held = {}, {}
        for m, up in ups.items():
            scene_up = upsample.for_scene(up, lambda: [inp])
            before = getattr(scene_up, "held_px", None)
            ests[m] = scene_up(*inp)[idx]
            if before is not None:  # values the guard's range bound moved (of every band it gives)
                held[m] = scene_up.held_px - before
        res = {"bands": list(bands), "sums": {m: metrics.sums(e, ref) for m, e in ests.items()}, "patches": [],
               "held_px": held}
        # the 120 x 120 patches of the piece's 10 m grid, on the reference grid
        f = RATIO[name]
        side = PATCH_PX // f
        h, w = ref.shape[1:]
        for r in range(0, h - side + 1, side):
            for c in range(0, w - side + 1, side):
                cover, source = scenes_mod.patch_cover(piece, r * f, c * f)
                rm = {m: float(np.sqrt(((e[:, r:r + side, c:c + side].astype(np.float64) - ref[:, r:r + side, c:c + side]) ** 2).mean()))
                      for m, e in ests.items()}
                res["patches"].append({"name": f"{piece.name}@{r * f},{c * f}", "cover": cover, "source": source, "rmse": rm})
        out[name] = res
        images[name] = {"reference": ref, "bands": bands, "input": low, **ests}
    return out, images


# --------------------------------------------------------------------------- scenes and pooling

class Seen:
    """What the DSen2 weights were trained or validated on, as their bundle records it: scene keys,
    and the content of the inputs (each input's digest and every file's, names left out), so that
    a copy of a training input under another name is known as one."""

    def __init__(self, keys=(), sources=(), files=()):
        self.keys, self.sources, self.files = set(keys), set(sources), set(files)

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def why(self, scene) -> str | None:
        """Why ``scene`` counts as seen, or None."""
        if scene.key in self.keys:
            return "the DSen2 weights were trained or validated on it"
        if not (self.sources or self.files):
            return None
        for piece in scene.pieces:
            if content_digest(piece.path) in self.sources:
                return f"{piece.path} has the bytes of an input the DSen2 weights were trained on"
            shared = set().union(*(file_digests(f) for f in scenes_mod.pixel_files(piece.path))) & self.files
            if shared:
                return (f"{piece.path} holds {len(shared)} band file(s) with the bytes of the DSen2 weights' training "
                        f"inputs")
        return None


def seen_scenes(methods, options: dict) -> Seen:
    """What the DSen2 weights saw (``Seen``), from their bundle: the scenes it names (for a bundle
    that names only its source files, the keys of those names) and the sources' digests."""
    if "dsen2" not in methods:
        return Seen()
    from dataset_builder.sr.weights import load
    _, prov = load(options.get("weights"), options.get("model") or "default")
    p = prov.get("provenance") if isinstance(prov.get("provenance"), dict) else {}
    sources = p.get("sources") if isinstance(p.get("sources"), dict) else {}
    keys = (set(p["train_scenes"]) | set(p.get("val_scenes", [])) if "train_scenes" in p
            else {scenes_mod.scene_key(name)[0] for name in sources})
    files = p.get("source_files") if isinstance(p.get("source_files"), list) else []
    return Seen(keys, {str(v) for v in sources.values()}, {str(v) for v in files})


def evaluate(scene_list, methods, options: dict | None = None, mode="gauss", truth=None, seen=None,
             allow_seen=False, progress=None):
    """The report (see the module's docstring) and, per protocol, the images of the largest piece."""
    ups = {m: upsample.get(m, **((options or {}) if m == "dsen2" else {})) for m in methods}
    report = {"methods": list(methods), "scenes": [], "excluded": []}
    images = {}
    seen = seen if isinstance(seen, Seen) else Seen(seen or ())
    for sc in scene_list:
        why_seen = seen.why(sc)
        if why_seen and not allow_seen:
            report["excluded"].append({"scene": sc.key, "why": why_seen})
            continue
        row = {"scene": sc.key, "kind": sc.kind, "pieces": 0, "seen": bool(why_seen), "protocols": {}}
        for piece in sc.pieces:
            try:
                res, imgs = _piece_results(piece, ups, truth, mode, report)
            except InputError as e:
                if e.path != str(piece.path):  # the weights' fault, not this input's: every piece would fail
                    raise
                report.setdefault("failed", []).append(failure(e))
                continue
            row["pieces"] += 1
            for name, r in res.items():
                cur = row["protocols"].setdefault(name, {"bands": r["bands"], "sums": {}, "patches": [], "held_px": {}})
                cur["sums"] = {m: metrics.add(cur["sums"].get(m), r["sums"][m]) for m in methods}
                cur["patches"] += r["patches"]
                cur["held_px"] = {m: cur["held_px"].get(m, 0) + n for m, n in r["held_px"].items()}
                if name not in images or imgs[name]["reference"].size > images[name]["reference"].size:
                    images[name] = imgs[name]
            if progress:
                progress(piece.name)
        if row["pieces"]:
            report["scenes"].append(row)
    return report, images


def failure(e: InputError) -> dict:
    """A report's record of an input that failed alone (the error kept whole, to be raised again
    when it is the only input)."""
    return {"piece": e.path, "why": e.problem}


def _piece_results(piece, ups: dict, truth, mode: str, report: dict):
    """``evaluate_piece`` after the checks that make a piece unmeasurable (an InputError naming it)."""
    if all(float(np.ptp(piece.cubes[k])) == 0 for k in ("im20", "im60")):
        raise InputError(piece.path, "every pixel of its 20 m and 60 m bands has one value: a constant image "
                                     "leaves Wald's protocol nothing to measure (every method is exact on it)")
    why = too_small(piece.shape, 2)
    if why:
        raise InputError(piece.path, f"too small for Wald's protocol: {why}")
    why6 = too_small(piece.shape, 6)
    if why6:
        report.setdefault("skipped", []).append({"piece": piece.name, "protocol": "6x", "why": why6})
    return evaluate_piece(piece, ups, truth if truth is not None else _product_truth(piece), mode)


def _product_truth(piece) -> np.ndarray | None:
    cand = Path(piece.path) / "truth_10m.tif"
    return _read_truth(cand, piece) if Path(piece.path).is_dir() and cand.exists() else None


def _read_truth(path: Path, piece) -> np.ndarray:
    try:
        with rasterio.open(path) as ds:
            truth = ds.read().astype(np.float32)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(path, f"cannot read the truth raster ({e})") from None
    if truth.shape[0] != len(BANDS_SUPER) or truth.shape[1:] != piece.shape:
        raise InputError(path, f"truth has shape {truth.shape}, expected (12, {piece.shape[0]}, {piece.shape[1]})")
    return truth


def pooled(report: dict, slack: float = 2.0) -> dict:
    """Per protocol: per method the pooled figures over every reported scene, the ratio to bicubic,
    and how many scenes and patches are worse than bicubic by more than ``slack`` DN; per cover
    the pooled patch RMSE per method."""
    out = {}
    protos = sorted({p for row in report["scenes"] for p in row["protocols"]}, key=list(RATIO).index)
    for proto in protos:
        rows = [r for r in report["scenes"] if proto in r["protocols"]]
        bands = rows[0]["protocols"][proto]["bands"]
        total = {}
        for r in rows:
            for m, s in r["protocols"][proto]["sums"].items():
                total[m] = metrics.add(total.get(m), s)
        figs = {m: metrics.figures(s, bands) for m, s in total.items()}
        patches = [p for r in rows for p in r["protocols"][proto]["patches"]]
        res = {"scenes": len(rows), "patches": len(patches), "methods": {}}
        for m, f in figs.items():
            entry = dict(f)
            if "bicubic" in figs and m != "bicubic":
                entry["ratio_to_bicubic"] = f["rmse"] / figs["bicubic"]["rmse"]
                entry["scenes_worse"] = [r["scene"] for r in rows if _rmse(r, proto, m) > _rmse(r, proto, "bicubic") + slack]
                entry["patches_worse"] = [p["name"] for p in patches if p["rmse"][m] > p["rmse"]["bicubic"] + slack]
            res["methods"][m] = entry
        covers = {}
        for p in patches:
            c = covers.setdefault(p["cover"], {"patches": 0, "sources": set(), "mse": {}})
            c["patches"] += 1
            c["sources"].add(p["source"])
            for m, v in p["rmse"].items():
                c["mse"][m] = c["mse"].get(m, 0.0) + v * v
        res["covers"] = {k: {"patches": c["patches"], "from": sorted(c["sources"]),
                             "rmse": {m: (v / c["patches"]) ** 0.5 for m, v in c["mse"].items()}}
                         for k, c in sorted(covers.items(), key=lambda kv: scenes_mod.COVERS.index(kv[0]))}
        out[proto] = res
    return out


def _rmse(row: dict, proto: str, m: str) -> float:
    p = row["protocols"][proto]
    return metrics.figures(p["sums"][m], p["bands"])["rmse"]


def merge_reports(docs: list[dict]) -> dict:
    """Several reports (their JSON) as one: the scenes of all, pooled anew."""
    merged = {"methods": docs[0]["report"]["methods"], "scenes": [], "excluded": [], "skipped": [], "failed": []}
    for d in docs:
        for k in ("scenes", "excluded", "skipped", "failed"):
            merged[k] += d["report"].get(k, [])
    slack = docs[0].get("slack", 2.0)
    return {"report": merged, "pooled": pooled(merged, slack), "slack": slack}


# --------------------------------------------------------------------------- tables

def scene_markdown(doc: dict) -> str:
    """Per protocol: one row per scene (RMSE per method, DSen2 / bicubic), the pooled row, the
    worse-than-bicubic counts, and the land-cover split."""
    report, pool, slack = doc["report"], doc["pooled"], doc.get("slack", 2.0)
    methods = report["methods"]
    lines = []
    for proto, res in pool.items():
        rows = [r for r in report["scenes"] if proto in r["protocols"]]
        ratio_cols = [m for m in methods if m != "bicubic" and "bicubic" in methods]
        lines += [f"### {proto} ({res['scenes']} scenes, {res['patches']} patches of 120 x 120)", "",
                  "| scene | kind | pieces | " + " | ".join(f"{m} RMSE" for m in methods) + " | "
                  + " | ".join(f"{m} / bicubic" for m in ratio_cols) + " |",
                  "|---" * (3 + len(methods) + len(ratio_cols)) + "|"]
        for r in sorted(rows, key=lambda r: (r["kind"], r["scene"])):
            rm = {m: _rmse(r, proto, m) for m in methods}
            mark = " (seen)" if r.get("seen") else ""
            lines.append(f"| {r['scene']}{mark} | {r['kind']} | {r['pieces']} | " + " | ".join(f"{rm[m]:.1f}" for m in methods)
                         + " | " + " | ".join(f"{rm[m] / rm['bicubic']:.3f}" for m in ratio_cols) + " |")
        f = res["methods"]
        lines.append("| **pooled** | | | " + " | ".join(f"**{f[m]['rmse']:.1f}**" for m in methods) + " | "
                     + " | ".join(f"**{f[m]['ratio_to_bicubic']:.3f}**" for m in ratio_cols) + " |")
        kinds = sorted({r["kind"] for r in rows})
        for kind in kinds if len(kinds) > 1 else ():  # top-of-atmosphere (L1C), surface (L2A), synthetic apart
            of_kind = [r for r in rows if r["kind"] == kind]
            k = pooled({"scenes": of_kind}, slack)[proto]["methods"]
            lines.append(f"| *pooled, {kind}* | | {sum(r['pieces'] for r in of_kind)} | "
                         + " | ".join(f"*{k[m]['rmse']:.1f}*" for m in methods) + " | "
                         + " | ".join(f"*{k[m]['ratio_to_bicubic']:.3f}*" for m in ratio_cols) + " |")
        lines += ["", "| method | RMSE | SRE dB | SAM ° | / bicubic | scenes worse than bicubic | patches worse than bicubic |",
                  "|---|---|---|---|---|---|---|"]
        for m in methods:
            e = f[m]
            worse = (f"{len(e['scenes_worse'])} of {res['scenes']}", f"{len(e['patches_worse'])} of {res['patches']}")                 if "scenes_worse" in e else ("", "")
            lines.append(f"| {m} | {e['rmse']:.1f} | {e['sre']:.2f} | {e['sam']:.3f} | "
                         f"{e.get('ratio_to_bicubic', 1.0):.3f} | {worse[0]} | {worse[1]} |")
        lines += ["", f"(worse: RMSE above bicubic's by more than {slack:g} DN)", "",
                  "| land cover (patches) | from | " + " | ".join(f"{m} RMSE" for m in methods) + " |",
                  "|---" * (2 + len(methods)) + "|"]
        for cover, c in res["covers"].items():
            lines.append(f"| {cover} ({c['patches']}) | {', '.join(c['from'])} | "
                         + " | ".join(f"{c['rmse'][m]:.1f}" for m in methods) + " |")
        lines.append("")
    for e in report["excluded"]:
        lines.append(f"- left out: {e['scene']} ({e['why']})")
    for e in report.get("failed", []):
        lines.append(f"- failed, not measured: {e['piece']} ({e['why']})")
    for proto, res in pool.items():
        held = {m: sum(r["protocols"][proto].get("held_px", {}).get(m, 0) for r in report["scenes"] if proto in r["protocols"])
                for m in methods}
        for m, n in held.items():
            if n:
                lines.append(f"- {proto}: {m}'s guard held {n} output value(s) to their coarse neighbourhood's range")
    skipped = report.get("skipped", [])
    if skipped:
        lines.append(f"- 6x not run on {len(skipped)} piece(s) too small for it ({skipped[0]['why'].split('; ')[0]}): "
                     + ", ".join(k["piece"] for k in skipped[:5]) + (" …" if len(skipped) > 5 else ""))
    return "\n".join(lines)


def figure(images: dict, proto: str, path: Path, methods: list[str]) -> None:
    """Colour composite of a band triple: input (nearest), bicubic, the last method, reference, errors."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    im = dict(images[proto])
    bands = im["bands"]
    # a central window of at most VIEW px, so the detail is visible and the file small
    h, w = im["reference"].shape[1:]
    # (multiples of 12, so the window starts on a pixel of every coarser grid shown)
    n = min(VIEW, h, w) // 12 * 12
    r0, c0 = (h - n) // 24 * 12, (w - n) // 24 * 12
    for key, a in list(im.items()):
        if isinstance(a, np.ndarray):
            im[key] = a[:, r0:r0 + n, c0:c0 + n]
    im["input"] = {k: v[:, r0 * v.shape[1] // h:(r0 + n) * v.shape[1] // h, c0 * v.shape[2] // w:(c0 + n) * v.shape[2] // w]
                   for k, v in im["input"].items()}
    triple = [b for b in FIGURE_BANDS[proto] if b in bands] or list(bands[:3])
    sel = [list(bands).index(b) for b in triple]
    while len(sel) < 3:
        sel.append(sel[-1])
    ref = im["reference"][sel]
    lo, hi = np.percentile(ref, 1), np.percentile(ref, 99)

    def rgb(a):
        return np.clip(a - lo, 0, None).transpose(1, 2, 0) / max(hi - lo, 1)

    inp, h = im["input"], ref.shape[1]
    low = []
    for i in sel:  # the coarse bands as the method got them, shown with nearest upsampling
        cube, names = (inp["im20"], BANDS_20M) if bands[i] in BANDS_20M else (inp["im60"], BANDS_60M)
        a = cube[names.index(bands[i])]
        f = h // a.shape[0]
        low.append(np.repeat(np.repeat(a, f, 0), f, 1))
    low = np.stack(low)
    shown = list(dict.fromkeys(m for m in ("bicubic", methods[-1]) if m in im))
    panels = [("input (nearest)", rgb(low))] + [(m, rgb(im[m][sel])) for m in shown] + [("reference", rgb(ref))]
    errs = [(f"|{m} - ref|", np.abs(im[m][sel] - ref).mean(0)) for m in shown]
    vmax = max(np.percentile(e, 99) for _, e in errs)
    fig, axes = plt.subplots(1, len(panels) + len(errs), figsize=(3.2 * (len(panels) + len(errs)), 3.4))
    for ax, (t, a) in zip(axes, panels):
        ax.imshow(np.clip(a, 0, 1), interpolation="nearest")
        ax.set_title(t, fontsize=9)
    for ax, (t, e) in zip(axes[len(panels):], errs):
        ax.imshow(e, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{t} (0–{vmax:.0f})", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{proto}: {'/'.join(triple)} as R/G/B", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(args) -> int:
    """Evaluate, holding --out (if any) for the run: a second sr-eval into it is refused, naming this one."""
    with folder_lock(args.out, False, "sr-eval run") if args.out else contextlib.nullcontext():
        return evaluate_run(args)


def evaluate_run(args) -> int:
    if args.out:
        output_folder(args.out)  # before the evaluation, not after it
    methods = args.methods
    from bigearth.options import check_sr_model
    check_sr_model(args)
    options = {"weights": args.sr_weights, "device": args.sr_device, "precision": args.sr_precision,
               "adapt": args.sr_adapt, "model": args.sr_model}
    unread: list[InputError] = []
    scene_list = scenes_mod.load(args.inputs, failed=unread)
    truth = None
    if args.truth:
        if sum(len(s.pieces) for s in scene_list) != 1:
            raise OptionError("--truth: goes with a single input")
        truth = _read_truth(Path(args.truth), scene_list[0].pieces[0])
    seen = seen_scenes(methods, options)
    report, images = evaluate(scene_list, methods, options, args.degradation, truth, seen, args.allow_seen)
    report["failed"] = [failure(e) for e in unread] + report.get("failed", [])
    if not report["scenes"] and report["failed"]:  # nothing measured: the (first) input's own error
        first = report["failed"][0]
        raise InputError(first["piece"], first["why"])
    if not report["scenes"]:
        raise OptionError(f"--sr-weights {args.sr_weights or f'(shipped {args.sr_model!r})'}: every input is of a scene these weights were "
                          "trained or validated on; nothing is left to report (--allow-seen reports them anyway, marked)")
    doc = {"inputs": list(map(str, args.inputs)), "degradation": args.degradation, "slack": args.slack,
           "report": report, "pooled": pooled(report, args.slack)}
    md = scene_markdown(doc)
    print(md)
    if args.out:
        out = output_folder(args.out)
        write_text(out / "sr_eval.json", json.dumps(doc, indent=1))
        write_text(out / "sr_eval.md", md)
        with atomic_path(out / "sr_eval.csv") as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["scene", "kind", "protocol", "method", "band", "rmse"])
                for row in report["scenes"]:
                    for proto, p in row["protocols"].items():
                        for m in methods:
                            fig = metrics.figures(p["sums"][m], p["bands"])
                            for b, v in fig["bands"].items():
                                w.writerow([row["scene"], row["kind"], proto, m, b, f"{v['rmse']:.3f}"])
                            w.writerow([row["scene"], row["kind"], proto, m, "all", f"{fig['rmse']:.3f}"])
        if not args.no_figures:
            for proto in images:
                figure(images, proto, out / f"sr_eval_{proto}.png", methods)
        print(f"written to {out}")
    if report["failed"]:
        first = report["failed"][0]
        raise InputError(first["piece"], f"{first['why']} ({len(report['failed'])} input(s) failed and are not measured, "
                                         f"listed in the report; the others are)")
    return 0
