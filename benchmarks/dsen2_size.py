"""Which N (blocks) x F (features) to ship: each size's 2x network trained the same way for the
same number of steps (sr-train, one run each, side by side), with its seconds on this machine and
the validation L1 on its held-out validation scenes, then Wald 2x RMSE on the real crop, whose
scene is left out of training (``--exclude-scenes``).

    python benchmarks/dsen2_size.py SCENES... [--sizes 4x32,6x32,6x64] [--epochs 5]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bigearth_cli.cli import main as cli
from dataset_builder.sr.model import DSen2Net, NetSpec
from dataset_builder.sr.weights import save_bundle

CROP = Path(__file__).resolve().parents[1].parent / "shared/fixtures/sentinel2-crops/S2A_MSIL1C_20170527_T33UUB.mat"
CROP_SCENE = "S2A_20170527"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="+")
    ap.add_argument("--sizes", default="4x32,6x32,6x64")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps-per-epoch", type=int, default=100)
    args = ap.parse_args()
    print("| N x F | parameters (2x) | train s | val L1 | crop 2x RMSE (unseen scene) |")
    print("|---|---|---|---|---|")
    for size in args.sizes.split(","):
        n, f = map(int, size.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            cli(["sr-train", *args.scenes, "--out", tmp, "--nets", "2", "--blocks", str(n), "--features", str(f),
                 "--epochs2", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch), "--batch2", "64",
                 "--lr", "5e-4", "--no-progress", *(["--exclude-scenes", CROP_SCENE] if CROP.exists() else [])])
            secs = time.perf_counter() - t
            ck = torch.load(Path(tmp) / "checkpoint_2x.pt", weights_only=True)
            net = DSen2Net(NetSpec(2, n, f))
            net.load_state_dict(ck["net"])
            save_bundle(Path(tmp) / "b.npz", {2: net, 6: DSen2Net(NetSpec(6, 1, 4))}, {"provenance": {}})
            rmse = float("nan")
            if CROP.exists():
                cli(["sr-eval", str(CROP), "--methods", "dsen2", "--sr-weights", str(Path(tmp) / "b.npz"),
                     "--no-figures", "--out", tmp])
                rmse = json.loads((Path(tmp) / "sr_eval.json").read_text())["pooled"]["2x"]["methods"]["dsen2"]["rmse"]
        params = sum(p.numel() for p in net.parameters())
        print(f"RESULT | {n}x{f} | {params:,} | {secs:.0f} | {ck['history'][-1]['val_l1']:.5f} | {rmse:.1f} |", flush=True)


if __name__ == "__main__":
    main()
