"""``bigearth-sr sr-train``: train the DSen2 networks under Wald's protocol and write a weights
bundle that ``--upsampling dsen2 --sr-weights`` takes.

Plain functions, in the order they run: sources, Wald pairs (west part of every scene for
training, east part held out), one network after the other (2x, then 6x), each with random
crops, L1 loss, Nadam, the learning rate halved after ``--patience`` epochs without validation
gain down to ``--min-lr``, an atomic checkpoint per epoch (tensors and plain values only, read
back with ``weights_only=True``) from which ``--resume`` goes on, and the bundle last.
Every random draw comes from one torch generator seeded by ``--seed`` and saved in the checkpoint,
so a resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from bigearth.files import atomic_path, content_digest, load_torch, sha256_file
from bigearth.options import float_in, nonneg_int, positive_float, positive_int, tile_size_m, torch_device

from bigearth.errors import InputError
from . import wald
from .infer import net_input
from .model import SCALE, DSen2Net, NetSpec
from .weights import save_bundle


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenes", nargs="*", help="training scenes: Level-2A products (.SAFE/.zip, or a folder of them) "
                                             "and MAT/HDF5 crops with im10/im20/im60; none: synthesize the default products")
    p.add_argument("--out", required=True, help="folder for checkpoints, the history and dsen2.npz")
    p.add_argument("--blocks", type=nonneg_int, default=6, help="residual blocks N (DSen2: 6, VDSen2: 32)")
    p.add_argument("--features", type=positive_int, default=128, help="features F (DSen2: 128, VDSen2: 256)")
    p.add_argument("--nets", default="2,6", choices=("2,6", "2", "6"), help="which networks to train")
    p.add_argument("--epochs2", type=nonneg_int, default=100, help="epochs of the 2x (20 m) network")
    p.add_argument("--epochs6", type=nonneg_int, default=100, help="epochs of the 6x (60 m) network")
    p.add_argument("--steps-per-epoch", type=positive_int, default=100, help="optimizer steps between validations")
    p.add_argument("--batch2", type=positive_int, default=128, help="crops per step, 2x network (published: 128)")
    p.add_argument("--batch6", type=positive_int, default=128, help="crops per step, 6x network (published: 128)")
    p.add_argument("--crop2", type=positive_int, default=32, help="crop side on the degraded 10 m grid, 2x (published: 32)")
    p.add_argument("--crop6", type=positive_int, default=96, help="crop side on the degraded 10 m grid, 6x (published: 96)")
    p.add_argument("--lr", type=positive_float, default=1e-4, help="Nadam learning rate")
    p.add_argument("--min-lr", type=positive_float, default=1e-5, help="halving stops here")
    p.add_argument("--patience", type=positive_int, default=5, help="epochs without validation gain before halving")
    p.add_argument("--degradation", choices=wald.MODES, default="gauss",
                   help="Wald degradation: gauss (sigma 1/s, the authors') or mtf (per-band MTF-matched)")
    p.add_argument("--val-east", type=float_in(0.0, 1.0, lo_open=True, hi_open=True), default=0.5,
                   help="share of every scene's columns (east side) held out for validation")
    p.add_argument("--balance", choices=("sources", "area"), default="sources",
                   help="crops drawn from each scene equally often, or in proportion to its area")
    p.add_argument("--synth-products", type=positive_int, default=4, help="synthetic products when no scene is given")
    p.add_argument("--synth-size-m", type=tile_size_m, default=12_000, help="their tile side (m)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision (GPU)")
    p.add_argument("--resume", action="store_true", help="go on from the checkpoints in --out")
    p.add_argument("--no-progress", action="store_true")


# --------------------------------------------------------------------------- data

def scene_paths(args) -> list[Path]:
    """The scenes to train on; synthesizes the default products when none is given."""
    if not args.scenes:
        from ..synth import write_default_set
        return write_default_set(Path(args.out) / "products", args.synth_products, args.synth_size_m, args.seed)
    out = []
    for s in map(Path, args.scenes):
        if s.is_dir() and s.suffix != ".SAFE" and not (s / "MTD_MSIL2A.xml").exists():
            found = sorted([*s.glob("*.SAFE"), *s.glob("*.zip"), *s.glob("*.mat")])
            if not found:
                raise InputError(s, "a folder with no .SAFE/.zip product and no .mat crop in it")
            out += found
        else:
            out.append(s)
    return out


def pairs_for(ratio: int, scenes: list[dict], mode: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(network input (C, h, w), target (O, h, w)) per scene, both reflectance x 10000."""
    out = []
    for sc in scenes:
        low, target = wald.pair(sc, ratio, mode)
        x = net_input(ratio, low["im10"], low["im20"], low.get("im60"))
        out.append((x, torch.from_numpy(np.ascontiguousarray(target, np.float32))))
    return out


def sample_batch(pairs, probs: torch.Tensor, crop: int, batch: int, gen: torch.Generator):
    """``batch`` random crops (scene drawn by ``probs``), each rotated by k x 90 degrees and maybe flipped."""
    xs, ys = [], []
    idx = torch.multinomial(probs, batch, replacement=True, generator=gen)
    for i in idx.tolist():
        x, y = pairs[i]
        h, w = x.shape[1:]
        r = int(torch.randint(0, h - crop + 1, (1,), generator=gen))
        c = int(torch.randint(0, w - crop + 1, (1,), generator=gen))
        k, flip = torch.randint(0, 4, (2,), generator=gen).tolist()
        xc, yc = x[:, r:r + crop, c:c + crop], y[:, r:r + crop, c:c + crop]
        xc, yc = torch.rot90(xc, k, (1, 2)), torch.rot90(yc, k, (1, 2))
        if flip % 2:
            xc, yc = xc.flip(2), yc.flip(2)
        xs.append(xc)
        ys.append(yc)
    return torch.stack(xs), torch.stack(ys)


def validate(net: DSen2Net, pairs, device) -> float:
    """Mean L1 (in units of reflectance x 10000 / 2000, the loss's scale) over the held-out images."""
    net.eval()
    total, n = 0.0, 0
    with torch.inference_mode():
        for x, y in pairs:
            pred = net(x[None].to(device)).float().cpu()[0]
            total += float((pred - y).abs().sum()) / SCALE
            n += y.numel()
    net.train()
    return total / n


# --------------------------------------------------------------------------- one network

def _ckpt(out: Path, ratio: int) -> Path:
    return out / f"checkpoint_{ratio}x.pt"


def _run_fingerprint(args, ratio: int, sources: dict) -> str:
    """What a checkpoint must share with the run that resumes it."""
    keys = ("blocks", "features", "steps_per_epoch", "lr", "min_lr", "patience", "degradation", "val_east",
            "balance", "seed")
    d = {k: getattr(args, k) for k in keys}
    d.update(ratio=ratio, batch=getattr(args, f"batch{ratio}"), crop=getattr(args, f"crop{ratio}"), sources=sources)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def load_checkpoint(path: Path, fingerprint: str) -> dict:
    ck = load_torch(path, "sr-train checkpoint")
    if not isinstance(ck, dict) or ck.get("fingerprint") != fingerprint:
        raise InputError(path, "checkpoint of another run (other options or scenes); remove it or use another --out")
    return ck


def train_net(ratio: int, args, train, val, sources: dict, log) -> tuple[DSen2Net, list[dict]]:
    device = torch.device(args.device)
    out = Path(args.out)
    crop, batch, epochs = getattr(args, f"crop{ratio}"), getattr(args, f"batch{ratio}"), getattr(args, f"epochs{ratio}")
    usable = [(x, y) for x, y in train if min(x.shape[1:]) >= crop]
    if not usable:
        raise InputError(out, f"no training scene is {crop} px on the {ratio}x network's grid; lower --crop{ratio}")
    if len(usable) < len(train):
        log(f"{ratio}x: {len(train) - len(usable)} scene(s) smaller than the {crop} px crop are left out of training")
    area = torch.tensor([float(x.shape[1] * x.shape[2]) for x, _ in usable])
    probs = area / area.sum() if args.balance == "area" else torch.full((len(usable),), 1.0 / len(usable))

    gen = torch.Generator().manual_seed(args.seed * 1000 + ratio)
    torch.manual_seed(args.seed * 1000 + ratio)
    net = DSen2Net(NetSpec(ratio, args.blocks, args.features)).to(device)
    opt = torch.optim.NAdam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=args.patience, min_lr=args.min_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    amp = (torch.autocast(device.type, dtype=torch.bfloat16 if args.amp == "bf16" else torch.float16)
           if args.amp != "none" else contextlib.nullcontext())
    fp = _run_fingerprint(args, ratio, sources)
    history: list[dict] = []
    start = 0
    if args.resume and _ckpt(out, ratio).exists():
        ck = load_checkpoint(_ckpt(out, ratio), fp)
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])
        history, start = ck["history"], int(ck["epoch"])
        log(f"{ratio}x: resumed after epoch {start}")

    from tqdm import tqdm
    net.train()
    for epoch in range(start, epochs):
        t0, losses = time.perf_counter(), []
        bar = tqdm(range(args.steps_per_epoch), desc=f"{ratio}x epoch {epoch + 1}/{epochs}", leave=False,
                   disable=args.no_progress)
        for _ in bar:
            x, y = sample_batch(usable, probs, crop, batch, gen)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with amp:
                loss = (net(x).float() - y).abs().mean() / SCALE
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"{ratio}x: loss is {loss.item()} at epoch {epoch + 1}; the last checkpoint is kept")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
            bar.set_postfix(l1=f"{losses[-1]:.4f}")
        v = validate(net, val, device)
        sched.step(v)
        history.append({"epoch": epoch + 1, "train_l1": float(np.mean(losses)), "val_l1": v,
                        "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
        log(f"{ratio}x epoch {epoch + 1}/{epochs}: train L1 {history[-1]['train_l1']:.5f}  val L1 {v:.5f}  "
            f"lr {history[-1]['lr']:.1e}  {history[-1]['seconds']:.0f} s")
        state = {"fingerprint": fp, "epoch": epoch + 1, "net": net.state_dict(), "opt": opt.state_dict(),
                 "sched": sched.state_dict(), "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                 "history": history, "spec": {"ratio": ratio, "blocks": args.blocks, "features": args.features}}
        with atomic_path(_ckpt(out, ratio)) as tmp:
            torch.save(state, tmp)
    return net.cpu().eval(), history


# --------------------------------------------------------------------------- the command

def main(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.txt"

    def log(msg: str) -> None:
        print(msg, flush=True)
        with open(log_path, "a") as f:
            f.write(msg + "\n")

    paths = scene_paths(args)
    sources = {p.name: content_digest(p) for p in paths}
    west, east = [], []
    for p in paths:
        w, e = wald.split_east(wald.read_scene(p), args.val_east)
        west.append(w)
        east.append(e)
    log(f"sr-train: {len(paths)} scene(s); west {1 - args.val_east:.0%} trains, east {args.val_east:.0%} validates")
    nets, histories = {}, {}
    for ratio in map(int, args.nets.split(",")):
        nets[ratio], histories[ratio] = train_net(ratio, args, pairs_for(ratio, west, args.degradation),
                                                  pairs_for(ratio, east, args.degradation), sources, log)
    if set(nets) != {2, 6}:
        log("only one network trained: no bundle written (a bundle holds both)")
        return 0
    options = {k: v for k, v in vars(args).items() if k != "func" and not callable(v)}
    meta = {"provenance": {"trained_by": "bigearth-sr sr-train", "options": options, "seed": args.seed,
                           "sources": sources, "degradation": args.degradation, "val_east": args.val_east,
                           "torch": torch.__version__, "device": str(args.device), "amp": args.amp,
                           "val_l1": {str(r): h[-1]["val_l1"] if h else None for r, h in histories.items()},
                           "history": {str(r): h for r, h in histories.items()}}}
    path = save_bundle(out / "dsen2.npz", nets, meta)
    log(f"wrote {path} (sha256 {sha256_file(path)[:16]}…)")
    return 0
