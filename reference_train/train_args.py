"""The reference trainer's flags (``bigearth-sr train``, ``python -m reference_train.train``):
in a module of their own that imports no torch, so that ``--help`` answers at once."""
from __future__ import annotations

import argparse

from bigearth import runs
from bigearth.options import (HelpFormatter, blocks_per_stage, float_in, int_list, nonneg_int, positive_float,
                              positive_int, split_name)

# the model's architectures (reference_train.model.ARCHS) and the recipe's mixup modes, by name
ARCH_NAMES = ("resnet18", "resnet34", "resnet50", "resnet50_v1", "resnet101")
MIXUP_MODES = ("per-patch", "per-batch")

# what a stopped run leaves for its rerun (said with "stopped by ...; rerun the same command ...")
KEPT = "the checkpoint of the last finished step is kept; add --resume"

def optional_split(text):
    """A split, or '' for none."""
    return "" if not str(text).strip() else split_name(text)


optional_split.__name__ = "split"

DESCRIPTION = """Reference trainer: ResNet-50 multilabel classification of the shards, data-parallel with
Horovod (or torch.distributed), the recipe of Sedona et al. 2019 after Goyal et al. 2017.

    bigearth-sr train --data out/demo/shards --output-dir runs/demo                 # one process
    horovodrun -np 4 python -m reference_train.train --engine horovod --data ... --output-dir ...
    torchrun --nproc_per_node 4 -m reference_train.train --engine ddp --data ... --output-dir ...
    sbatch reference_train/slurm/train_horovod.sbatch                               # N nodes x 4 GPUs

Every knob is a flag with the paper's value as default.
"""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=HelpFormatter,
                                add_help=add_help)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="shard folder (with index.json) written by `bigearth-sr shards`")
    g.add_argument("--variant", default="super", choices=("super", "rgb", "native"),
                   help="12 super-resolved bands, RGB, or the native 10/20/60 m cubes (multi-resolution stem)")
    g.add_argument("--labels", type=int, default=43, choices=(43, 19), help="43 CORINE classes or BigEarthNet-19")
    g.add_argument("--train-split", type=split_name, default="train", help="split to train on")
    g.add_argument("--val-split", type=optional_split, default="validation",
                   help="evaluated after each epoch on rank 0 ('' to skip)")
    g.add_argument("--workers", type=nonneg_int, default=None,
                   help="DataLoader worker processes per rank (default: half of this rank's share of the node's "
                        "cores, at most 4; 0 on a one-core share)")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op threads per rank (default: OMP_NUM_THREADS if set, else the node's usable cores "
                        "divided among the ranks on it; loader workers default to half that share, at most 4)")
    g.add_argument("--shuffle", type=nonneg_int, default=1000, help="shuffle buffer (samples) per worker")
    g.add_argument("--resampled", action="store_true",
                   help="draw shards with replacement (default: every sample once per epoch, the same "
                        "number on every rank)")
    g.add_argument("--synthetic-data", action="store_true",
                   help="random tensors in memory instead of the shards (to measure the model alone)")
    g = p.add_argument_group("model")
    g.add_argument("--arch", default="resnet50", choices=ARCH_NAMES,
                   help="torchvision's ResNets (v1.5: a block downsamples in its 3x3 convolution); resnet50_v1 is the "
                        "paper's Keras ResNet-50 (v1: the stride in the block's first 1x1 convolution)")
    g.add_argument("--layers", type=blocks_per_stage, default=None,
                   help="blocks per stage, e.g. 1,1,1,1 (a shallower net for CPU tests) (default: the architecture's own)")
    g.add_argument("--dropout", type=float_in(0.0, 1.0, hi_open=True), default=0.5, help="dropout before the last dense layer")
    g = p.add_argument_group("recipe")
    g.add_argument("--epochs", type=positive_int, default=100, help="passes over the training split")
    g.add_argument("--batch-size", type=positive_int, default=64, help="images per worker (n)")
    g.add_argument("--base-lr", type=positive_float, default=0.1, help="lr for 256 images; lr = base * k * n / 256")
    g.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default: --base-lr scaled by the rule)")
    g.add_argument("--warmup-epochs", type=float_in(0.0), default=5.0, help="gradual warm-up from lr/k to lr")
    g.add_argument("--milestones", type=int_list(0), default=None,
                   help="epochs at which lr is multiplied by --gamma (default: the paper's 30,60,80; for a run of 30 "
                        "epochs or fewer, the same fractions of its own epochs, said at the start)")
    g.add_argument("--gamma", type=positive_float, default=0.1, help="lr factor at each milestone")
    g.add_argument("--momentum", type=float_in(0.0, 1.0, hi_open=True), default=0.9)
    g.add_argument("--no-nesterov", action="store_true", help="plain momentum instead of Nesterov's")
    g.add_argument("--weight-decay", type=float_in(0.0), default=1e-4, help="L2 on convolution weights only")
    g.add_argument("--mixup-alpha", type=float_in(0.0), default=0.2, help="mixup lambda ~ Beta(alpha, alpha); 0 disables")
    g.add_argument("--mixup", default="per-patch", choices=MIXUP_MODES,
                   help="draw lambda for each patch (the paper) or once per batch")
    g.add_argument("--no-rotate", action="store_true", help="no random rot90 + flip")
    g.add_argument("--steps-per-epoch", type=positive_int, default=None, help="cap on steps per epoch (default: one pass over the split)")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seed of initial weights, shuffles and augmentation")
    g = p.add_argument_group("distribution and speed")
    g.add_argument("--engine", default="none", choices=("horovod", "ddp", "none"),
                   help="horovod (horovodrun), ddp (torch.distributed, torchrun) or none (one process)")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: this rank's GPU where there is one, else cpu")
    g.add_argument("--global-bn", action="store_true",
                   help="BatchNorm over the global batch (all ranks) instead of each rank's own")
    g.add_argument("--fp16-allreduce", action="store_true", help="Horovod: compress gradients to fp16")
    g.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="automatic mixed precision")
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--timeout", type=positive_int, default=600, help="seconds a collective may wait (ddp)")
    g = p.add_argument_group("output")
    g.add_argument("--output-dir", required=True, help="checkpoints, metrics.csv, TensorBoard logs, curves.png")
    runs.add_flags(g, "checkpoint.pt")
    g.add_argument("--nan-check-every", type=positive_int, default=20, help="steps between checks of the loss")
    g.add_argument("--print-freq", type=nonneg_int, default=20, help="steps between log lines (0: none)")
    return p
