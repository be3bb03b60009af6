"""The flags of ``bigearth-sr sr-train`` and ``sr-eval``, in a module that imports no torch, so
that ``--help`` answers at once; the commands are ``train.py`` and ``evaluate.py``."""
from __future__ import annotations

import argparse

from bigearth import runs
from bigearth.options import (auto_or, choice_list, float_in, nonneg_int, positive_float, positive_int, tile_size_m,
                              torch_device)
from dataset_builder.sr import SIZES, describe_models

DEGRADATIONS = ("gauss", "mtf")  # Wald's degradations (wald.MODES)
METHODS = ("bicubic", "bilinear", "dsen2")  # the built-in upsamplers (upsample.available())


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The defaults are the recipe of the shipped weights (6 blocks of 32 features, 1,500 steps of
    the 2x network and 600 of the 6x: 6 minutes on 2 CPU cores); the help names the published
    DSen2 values (6 x 128, batches of 128, 100 + 100 epochs) where they differ."""
    p.add_argument("scenes", nargs="*", help="training inputs: Level-2A products (.SAFE/.zip), MAT/HDF5 crops with "
                                             "im10/im20/im60, BigEarthNet v1 patch folders, or folders of them; "
                                             "none: synthesize the default products")
    p.add_argument("--out", required=True, help="folder for checkpoints, the history and dsen2.npz")
    p.add_argument("--blocks", type=nonneg_int, default=6, help="residual blocks N (the shipped weights and published DSen2: 6, VDSen2: 32)")
    p.add_argument("--features", type=positive_int, default=32, help="features F (the shipped weights: 32; published DSen2: 128, VDSen2: 256)")
    p.add_argument("--nets", default="2,6", choices=("2,6", "2", "6"), help="which networks to train")
    p.add_argument("--epochs2", type=nonneg_int, default=15, help="epochs of the 2x (20 m) network")
    p.add_argument("--epochs6", type=nonneg_int, default=6, help="epochs of the 6x (60 m) network")
    p.add_argument("--steps-per-epoch", type=positive_int, default=100, help="optimizer steps between validations")
    p.add_argument("--batch2", type=positive_int, default=32, help="crops per step, 2x network (published: 128)")
    p.add_argument("--batch6", type=positive_int, default=16, help="crops per step, 6x network (published: 128)")
    p.add_argument("--crop2", type=positive_int, default=32, help="crop side on the degraded 10 m grid, 2x (published: 32)")
    p.add_argument("--crop6", type=positive_int, default=48, help="crop side on the degraded 10 m grid, 6x (published: 96)")
    p.add_argument("--lr", type=positive_float, default=5e-4, help="Nadam learning rate (published: 1e-4)")
    p.add_argument("--min-lr", type=positive_float, default=1e-5, help="halving stops here")
    p.add_argument("--patience", type=positive_int, default=5, help="epochs without validation gain before halving")
    p.add_argument("--degradation", choices=DEGRADATIONS, default="gauss",
                   help="Wald degradation: gauss (sigma 1/s, the authors') or mtf (per-band MTF-matched)")
    p.add_argument("--val-scenes", default="auto",
                   help="scenes held out whole for validation: comma-separated scene keys (see sr-eval's table), "
                        "or 'auto' (every fifth scene of each kind, L1C/L2A/synthetic, at least one)")
    p.add_argument("--exclude-scenes", default="",
                   help="comma-separated scene keys left out of training and validation (a cross-validation's test fold)")
    p.add_argument("--brightness", type=positive_float, default=1.6,
                   help="each crop is scaled by a factor drawn log-uniformly in [1/b, b] (1: off)")
    p.add_argument("--spectral-jitter", type=float_in(0.0, 1.0), default=0.0,
                   help="each band of a crop (input and target alike) gets its own gain, log-uniform in [1/(1+j), 1+j], "
                        "and offset, uniform in +-j x the band's crop mean: top-of-atmosphere vs surface reflectance, "
                        "other sensors' calibration (0: off)")
    p.add_argument("--no-consistency", action="store_true",
                   help="train without the consistency step in the forward pass")
    p.add_argument("--balance", choices=("sources", "area"), default="sources",
                   help="crops drawn from each scene equally often, or in proportion to its area")
    p.add_argument("--synth-products", type=positive_int, default=4, help="synthetic products when no scene is given")
    p.add_argument("--synth-size-m", type=tile_size_m, default=12_000, help="their tile side (m)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (crops, initial weights)")
    p.add_argument("--device", type=auto_or(torch_device), default="auto",
                   help="torch device (cpu, cuda, cuda:1); auto: cuda when this machine has one, else cpu")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision (GPU)")
    p.add_argument("--storage", choices=("float32", "float16"), default="float32",
                   help="how dsen2.npz stores the weights: float16 halves the file (read back as float32; the shipped "
                        "paper-size model is stored so)")
    runs.add_flags(p, "checkpoints (checkpoint_2x.pt, checkpoint_6x.pt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")



def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="MAT/HDF5 crops (im10/im20/im60), BigEarthNet v1 patch folders, "
                                              "Level-2A products (synthetic ones with their truth), or folders of them")
    p.add_argument("--methods", type=choice_list(METHODS), default="bilinear,bicubic,dsen2",
                   help=f"comma-separated upsampling methods, of {','.join(METHODS)}")
    p.add_argument("--truth", default=None, help="10 m truth of all 12 bands (GeoTIFF, BANDS_SUPER order) of a single "
                                                 "input; default: truth_10m.tif inside a synthetic product, if there")
    p.add_argument("--degradation", choices=DEGRADATIONS, default="gauss", help="Wald degradation")
    p.add_argument("--slack", type=positive_float, default=2.0,
                   help="a method is counted worse than bicubic on a scene or patch when its RMSE is higher by more than this (DN)")
    p.add_argument("--allow-seen", action="store_true",
                   help="report scenes the DSen2 weights were trained or validated on too (marked 'seen')")
    p.add_argument("--sr-weights", default=None, help="dsen2 weights: a bundle (.npz) or the two Keras files joined by a comma (default: the shipped weights)")
    p.add_argument("--sr-model", default="default", choices=tuple(SIZES),
                   help=f"dsen2: which shipped weights, when --sr-weights is not given: {describe_models()} "
                        f"(default: default)")
    p.add_argument("--sr-device", type=torch_device, default="cpu", help="dsen2: torch device (cpu, cuda, cuda:1)")
    p.add_argument("--sr-precision", default="fp32", choices=("auto", "fp32", "bf16", "fp16"),
                   help="dsen2 arithmetic (fp32 by default: the reference the other precisions are measured against)")
    p.add_argument("--sr-adapt", type=nonneg_int, default=0, metavar="STEPS",
                   help="dsen2: fine-tune on each piece's own (degraded) input for STEPS steps before it is "
                        "super-resolved, as build --sr-adapt does per tile (0: off)")
    p.add_argument("--no-figures", action="store_true", help="no PNG figures")
    p.add_argument("--out", default=None, help="folder for sr_eval.json/.md/.csv and the figures (default: print the tables only)")
