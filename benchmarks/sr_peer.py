"""s2super (ESA Phi-lab, MIT) beside DSen2, bicubic and bilinear: same scenes, same protocol.

    pip install --no-deps s2super          # its wheel carries the TensorFlow SavedModel; TF itself
                                           # comes with the project's tfds extra
    python benchmarks/sr_peer.py [--cv runs/sr/cv]   # after sr_crossval.py train

Each fold of the cross-validation (``sr_crossval.py``) is evaluated with that fold's DSen2
weights, so every DSen2 figure is on scenes its networks never saw; s2super's weights were
trained by its authors on their own mosaics (whether these scenes are among them is not known).

How s2super is run, from its package's own code: per 20 m band, the band bilinearly upsampled
to 10 m and B02, B03, B04, each divided by 10000, in 64 x 64 tiles; output channel 0 is the
prediction (channel 1 its confidence). The package's import needs ``buteo`` and its Keras
loader rejects the SavedModel's Keras-2 optimizer slots under TensorFlow 2.21, so the
SavedModel is read with ``tf.compat.v1.saved_model.loader.load`` on the ``serve`` tag (the
serving signature). Tiles overlap by half and are merged with tent weights (the package's
"fast" mode merges overlapping tiles with edge-distance weights likewise); inputs smaller than
a tile are mirrored out to one. s2super does not sharpen the 60 m bands: they are bicubic here,
so its 6x row is bicubic's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bigearth.record import BANDS_20M  # noqa: E402
from dataset_builder import upsample  # noqa: E402
from sr_lab import evaluate as ev, scenes as scenes_mod  # noqa: E402

TILE, STEP = 64, 32


class S2Super:
    """s2super's pretrained network as an upsampler (the 20 m bands; the 60 m bands bicubic)."""

    name = "s2super"
    halo = 6
    needs_10m = True

    def __init__(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import importlib.util

        import tensorflow as tf
        spec = importlib.util.find_spec("s2super")
        if spec is None:
            sys.exit("s2super is not installed: pip install --no-deps s2super")
        model_dir = Path(spec.submodule_search_locations[0]) / "s2super_v5"
        tf.compat.v1.disable_eager_execution()
        self.sess = tf.compat.v1.Session(graph=tf.Graph())
        with self.sess.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.sess, ["serve"], str(model_dir))
        sig = meta.signature_def["serving_default"]
        self.low = sig.inputs["s2super_v2_input_low"].name
        self.rgb = sig.inputs["s2super_v2_input_rgb"].name
        self.out = next(iter(sig.outputs.values())).name
        t = np.minimum(np.arange(TILE) + 0.5, TILE - np.arange(TILE) - 0.5) / (TILE / 2)
        self.window = np.outer(t, t).astype(np.float32)

    def _sharpen(self, lows: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """lows (C, H, W) bilinear bands and rgb (3, H, W), reflectance: (C, H, W) predictions."""
        c, h, w = lows.shape
        ph, pw = max(TILE, -(-h // STEP) * STEP + STEP), max(TILE, -(-w // STEP) * STEP + STEP)

        def pad(a):
            return np.pad(a, ((0, 0), (0, ph - h), (0, pw - w)), mode="symmetric")
        lows, rgb = pad(lows), pad(rgb)
        pos = [(r, q) for r in range(0, ph - TILE + 1, STEP) for q in range(0, pw - TILE + 1, STEP)]
        x_rgb = np.stack([rgb[:, r:r + TILE, q:q + TILE].transpose(1, 2, 0) for r, q in pos])
        acc = np.zeros((c, ph, pw), np.float32)
        wsum = np.zeros((ph, pw), np.float32)
        for r, q in pos:
            wsum[r:r + TILE, q:q + TILE] += self.window
        for k in range(c):
            x_low = np.stack([lows[k, r:r + TILE, q:q + TILE, None] for r, q in pos])
            pred = np.concatenate([self.sess.run(self.out, {self.low: x_low[i:i + 256], self.rgb: x_rgb[i:i + 256]})
                                   for i in range(0, len(pos), 256)])[..., 0]
            for (r, q), p in zip(pos, pred):
                acc[k, r:r + TILE, q:q + TILE] += p * self.window
        return (acc / wsum)[:, :h, :w]

    def __call__(self, b10, b20, b60, region=None):
        out = upsample.get("bicubic")(b10, b20, b60)
        up20 = upsample.get("bilinear")(None, b20, b60)
        idx = [upsample.BANDS_SR.index(b) for b in BANDS_20M]
        out[idx] = self._sharpen(up20[idx] / 10000.0, np.asarray(b10[:3], np.float32) / 10000.0) * 10000.0
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cv", default="runs/sr/cv", help="the cross-validation's folder (folds.json, fold*/dsen2.npz)")
    a = p.parse_args()
    cv = Path(a.cv)
    upsample.register("s2super", lambda **_: S2Super())
    doc = json.loads((cv / "folds.json").read_text())
    by_key: dict = {}
    for path in map(Path, doc["inputs"]):
        by_key.setdefault(scenes_mod.read_piece(path)[1], []).append(path)
    methods = ["bilinear", "bicubic", "dsen2", "s2super"]
    docs = []
    for i, keys in enumerate(doc["folds"]):
        scene_list = scenes_mod.load([q for k in keys for q in by_key[k]])
        opts = {"weights": str(cv / f"fold{i}" / "dsen2.npz")}
        report, _ = ev.evaluate(scene_list, methods, opts, seen=ev.seen_scenes(methods, opts),
                                progress=lambda n: print(f"fold {i}: {n}", flush=True))
        docs.append({"report": report, "slack": 2.0})
    merged = ev.merge_reports(docs)
    (cv / "peer.json").write_text(json.dumps(merged, indent=1))
    md = ev.scene_markdown(merged)
    (cv / "peer.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
