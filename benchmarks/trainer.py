"""Training throughput of the reference model, in one run: images/s per process with the
batches (a) made once and kept in memory on the device (the model alone) and (b) streamed from
the shards through `shards.loader` (workers, pinned memory, uint16 to the device, normalisation
and augmentation there): the gap is the loader's cost. On a GPU both run in fp32 and in AMP
(bf16, channels_last). Then the projected time of the paper's 100 epochs over 519,226 patches.

    python benchmarks/trainer.py --data out/demo/shards [--arch resnet50 --batch-size 64 --steps 30]
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import torch

import shards
from reference_train.model import build_model, param_groups
from reference_train.train import get_args_parser, train_step

PAPER_PATCHES = 519_226


def run(model, opt, batches, normalizer, device, amp, channels_last, steps, warmup) -> float:
    """images/s over ``steps`` of the trainer's own steps after ``warmup`` untimed ones."""
    targs = get_args_parser().parse_args(["--data", "-", "--output-dir", "-", "--amp", "bf16" if amp else "none",
                                          *(["--channels-last"] if channels_last else [])])
    gen = torch.Generator().manual_seed(0)
    it = iter(batches)
    n, t0 = 0, None
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
        x, y = next(it)
        train_step(model, opt, None, x, y, normalizer, gen, targs, device)
        n += y.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.backends.cudnn.benchmark = True
    index = shards.read_index(args.data)[0]
    normalizer = shards.Normalizer(index).to(device)
    modes = [(False, False)] + ([(True, True)] if device.type == "cuda" else [])
    rows = []
    for amp, cl in modes:
        model = build_model("super", 43, args.arch).to(device)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        opt = torch.optim.SGD(param_groups(model, 1e-4), lr=0.01, momentum=0.9, nesterov=True)
        loader = shards.loader(args.data, "train", batch_size=args.batch_size, num_workers=args.workers,
                               resampled=True, normalize=False, epoch_samples=10**9)
        first = next(iter(loader))
        fixed = tuple(t.to(device) for t in first)
        synthetic = run(model, opt, itertools.repeat(fixed), normalizer, device, amp, cl, args.steps, args.warmup)
        streamed = run(model, opt, loader, normalizer, device, amp, cl, args.steps, args.warmup)
        rows.append(("AMP bf16 + channels_last" if amp else "fp32", synthetic, streamed))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.machine()}, {os.cpu_count()} cores"
    print(f"\n{name}; {args.arch}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup}; "
          f"loader workers {args.workers}; torch {torch.__version__}")
    print("| precision | in-memory images/s | shard pipeline images/s | pipeline / in-memory | "
          "100 epochs x 519,226 on 1 device | on 4 devices (ideal) |")
    print("|---|---|---|---|---|---|")
    for label, syn, stream in rows:
        hours = 100 * PAPER_PATCHES / stream / 3600
        print(f"| {label} | {syn:,.1f} | {stream:,.1f} | {stream / syn:.2f} | {hours:,.1f} h | {hours / 4:,.1f} h |")


if __name__ == "__main__":
    main()
