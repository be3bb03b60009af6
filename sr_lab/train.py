"""``bigearth-sr sr-train``: train the DSen2 networks under Wald's protocol and write a weights
bundle that ``--upsampling dsen2 --sr-weights`` takes.

Plain functions, in the order they run: sources grouped into scenes (``scenes.py``: an
acquisition is one scene whatever its form), whole scenes held out for validation
(``--val-scenes``) and any named ones left out altogether (``--exclude-scenes``: a
cross-validation's test fold), Wald pairs, one network after the other (2x, then 6x), each
with random crops aligned to the coarse grid, rotations, flips and a brightness scale, the
consistency step (``consistency.project``) inside the forward pass so the network learns only
detail its input cannot contradict, L1 loss, Nadam, the learning rate halved after
``--patience`` epochs without validation gain down to ``--min-lr``, an atomic checkpoint per
epoch (tensors and plain values only, read back with ``weights_only=True``) from which
``--resume`` goes on, and the bundle last, naming every scene it trained and validated on.
Every random draw comes from one torch generator seeded by ``--seed`` and saved in the checkpoint,
so a resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from bigearth import runs
from bigearth.files import (atomic_path, content_digest, file_digests, folder_lock, load_torch, output_folder,
                            sha256_file)

from bigearth.errors import InputError, OptionError, TrainingDiverged
from dataset_builder.sr import consistency
from dataset_builder.sr.adapt import aligned_window, net_forward as forward
from dataset_builder.sr.inputs import net_input
from dataset_builder.sr.model import SCALE, DSen2Net, NetSpec
from dataset_builder.sr.weights import check_state, save_bundle

from . import scenes as scenes_mod, wald


# --------------------------------------------------------------------------- data

def scene_paths(args) -> list[Path]:
    """The inputs to train on; synthesizes the default products when none is given."""
    if not args.scenes:
        from dataset_builder.synth import write_default_set
        return write_default_set(Path(args.out) / "products", args.synth_products, args.synth_size_m, args.seed)
    return scenes_mod.expand(args.scenes)


def split_scenes(all_scenes: list, val: str, exclude: str) -> tuple[list, list]:
    """(training, validation) scenes: ``exclude`` keys dropped, ``val`` keys (or 'auto') held out."""
    keys = {s.key for s in all_scenes}
    for name, given in (("--exclude-scenes", exclude), ("--val-scenes", "" if val == "auto" else val)):
        unknown = [k for k in filter(None, given.split(",")) if k not in keys]
        if unknown:
            raise OptionError(f"{name}: no input is of scene {', '.join(unknown)} (scenes: {', '.join(sorted(keys))})")
    left = [s for s in all_scenes if s.key not in set(exclude.split(","))]
    if val == "auto":
        held = set()
        for kind in sorted({s.kind for s in left}):
            of_kind = [s.key for s in left if s.kind == kind]
            if len(of_kind) > 1:
                held |= set(of_kind[2::5] or of_kind[-1:])
    else:
        held = set(filter(None, val.split(",")))
    train = [s for s in left if s.key not in held]
    if not train:
        raise OptionError("--val-scenes/--exclude-scenes: no scene is left to train on")
    return train, [s for s in left if s.key in held]


class Pair:
    """One piece under Wald's protocol for a network: its input stack, target and coarse input."""

    def __init__(self, ratio: int, cubes: dict, mode: str):
        low, target = wald.pair(cubes, ratio, mode)
        self.x = net_input(ratio, low["im10"], low["im20"], low.get("im60"))
        self.y = torch.from_numpy(np.ascontiguousarray(target, np.float32))
        self.low = torch.from_numpy(np.ascontiguousarray(low["im20"] if ratio == 2 else low["im60"], np.float32))


def pairs_for(ratio: int, scene_list: list, mode: str, min_side: int | None = None) -> list[list[Pair]]:
    """Per scene, the Wald pairs of its pieces whose degraded grid is at least ``min_side`` px (a
    training crop), or, for validation, what the protocol needs to be measured (``wald.min_side``)."""
    need = wald.min_side(ratio) if min_side is None else max(min_side, ratio)
    return [[Pair(ratio, pc.cubes, mode) for pc in sc.pieces if wald.degraded_side(pc.shape, ratio) >= need]
            for sc in scene_list]


def sample_batch(pairs: list[list[Pair]], probs: torch.Tensor, crop: int, batch: int, gen: torch.Generator,
                 ratio: int, brightness: float = 1.0, jitter: float = 0.0):
    """``batch`` random crops: a scene drawn by ``probs``, a piece by its area, a window aligned to
    the coarse grid, rotated by k x 90 degrees, maybe flipped, scaled by a brightness factor.
    Returns (inputs, targets, coarse inputs). The coarse input is the crop's target degraded by
    the protocol's operator: cut from the whole scene's, its edge pixels would have been blurred
    with neighbours the crop lacks, and the consistency step would pull the crop's edges towards
    them (measured: 7 DN at the edge, 0.002 inside)."""
    xs, ys = [], []
    idx = torch.multinomial(probs, batch, replacement=True, generator=gen)
    for i in idx.tolist():
        scene = [p for p in pairs[i] if min(p.x.shape[1:]) >= crop]
        area = torch.tensor([float(p.x.shape[1] * p.x.shape[2]) for p in scene])
        p = scene[int(torch.multinomial(area, 1, generator=gen))]
        r, c, k, flip = aligned_window(*p.x.shape[1:], crop, ratio, gen)
        gain = float(torch.exp((torch.rand((), generator=gen) * 2 - 1) * math.log(brightness)))
        crops = [torch.rot90(t, k, (1, 2)) * gain for t in (p.x[:, r:r + crop, c:c + crop], p.y[:, r:r + crop, c:c + crop])]
        if jitter:  # per band: the target bands are the input stack's last ones, and move with them
            n = crops[0].shape[0]
            g = torch.exp((torch.rand(n, generator=gen) * 2 - 1) * math.log1p(jitter))
            o = (torch.rand(n, generator=gen) * 2 - 1) * jitter * crops[0].mean(dim=(1, 2))
            crops[0] = crops[0] * g[:, None, None] + o[:, None, None]
            m = crops[1].shape[0]
            crops[1] = crops[1] * g[-m:, None, None] + o[-m:, None, None]
        if flip % 2:
            crops = [t.flip(2) for t in crops]
        xs.append(crops[0])
        ys.append(crops[1])
    y = torch.stack(ys)
    return torch.stack(xs), y, consistency.degrade(y, ratio)


def validate(net: DSen2Net, pairs: list[list[Pair]], device, consistent: bool = True) -> float | None:
    """Mean L1 (in units of reflectance x 10000 / 2000, the loss's scale) over the held-out scenes'
    pieces; None when no held-out piece is large enough for the protocol."""
    net.eval()
    total, n = 0.0, 0
    with torch.inference_mode():
        for p in (p for scene in pairs for p in scene):
            pred = forward(net, p.x[None].to(device), p.low[None].to(device) if consistent else None).float().cpu()[0]
            total += float((pred - p.y).abs().sum()) / SCALE
            n += p.y.numel()
    net.train()
    return total / n if n else None


# --------------------------------------------------------------------------- one network

def _ckpt(out: Path, ratio: int) -> Path:
    return out / f"checkpoint_{ratio}x.pt"


def _run_fingerprint(args, ratio: int, sources: dict) -> str:
    """What a checkpoint must share with the run that resumes it."""
    keys = ("blocks", "features", "steps_per_epoch", "lr", "min_lr", "patience", "degradation", "val_scenes",
            "exclude_scenes", "brightness", "spectral_jitter", "no_consistency", "balance", "seed")
    d = {k: getattr(args, k) for k in keys}
    d.update(ratio=ratio, batch=getattr(args, f"batch{ratio}"), crop=getattr(args, f"crop{ratio}"), sources=sources)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def load_checkpoint(path: Path, fingerprint: str) -> dict:
    ck = load_torch(path, "sr-train checkpoint")
    if not isinstance(ck, dict) or ck.get("fingerprint") != fingerprint:
        raise InputError(path, "checkpoint of another run (other options or scenes); --overwrite starts a new run "
                                "in its place, or use another --out")
    return ck


def check_crop(ratio: int, crop: int, train) -> None:
    """``--crop<ratio>`` against the training pairs: a multiple of the ratio (crops are aligned to
    the coarse grid), and no larger than some scene; an OptionError otherwise."""
    if crop % ratio:
        raise OptionError(f"--crop{ratio} {crop}: must be a multiple of {ratio} (crops are aligned to the coarse grid)")
    if not any(min(p.x.shape[1:]) >= crop for sc in train for p in sc):
        raise OptionError(f"--crop{ratio} {crop}: no training scene is {crop} px on the {ratio}x network's grid; "
                          f"lower --crop{ratio}")


def describe_checkpoint(path: Path) -> str:
    """What a refusal says of an sr-train checkpoint: its network and epoch, or that it is unreadable."""
    try:
        ck = load_torch(path, "sr-train checkpoint")
        return f"the {ck['spec']['ratio']}x network at epoch {int(ck['epoch'])}"
    except InputError as e:
        return f"unreadable: {e.problem}"
    except (KeyError, TypeError, ValueError):
        return "not an sr-train checkpoint"


def train_net(ratio: int, args, train, val, sources: dict, log, resume: bool = False,
              on_checkpoint=lambda: None) -> tuple[DSen2Net, list[dict]]:
    """One network, trained (``resume``: on from its checkpoint, when it has one); ``on_checkpoint``
    is called after each checkpoint is written."""
    device = torch.device(args.device)
    out = Path(args.out)
    crop, batch, epochs = getattr(args, f"crop{ratio}"), getattr(args, f"batch{ratio}"), getattr(args, f"epochs{ratio}")
    check_crop(ratio, crop, train)
    usable = [[p for p in sc if min(p.x.shape[1:]) >= crop] for sc in train]
    usable = [sc for sc in usable if sc]
    if len(usable) < len(train):
        log(f"{ratio}x: {len(train) - len(usable)} scene(s) smaller than the {crop} px crop are left out of training")
    area = torch.tensor([float(sum(p.x.shape[1] * p.x.shape[2] for p in sc)) for sc in usable])
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
    if resume and _ckpt(out, ratio).exists():
        ck = load_checkpoint(_ckpt(out, ratio), fp)
        check_state(_ckpt(out, ratio), ck.get("net"), net)  # NaN weights would train on as NaN, silently
        try:
            net.load_state_dict(ck["net"])
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            gen.set_state(ck["gen"])
            torch.set_rng_state(ck["torch_rng"])
            history, start = list(ck["history"]), int(ck["epoch"])
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise InputError(_ckpt(out, ratio), f"not a complete sr-train checkpoint ({type(e).__name__}: "
                                                f"{str(e).splitlines()[0][:160] if str(e) else ''})") from None
        log(f"{ratio}x: resumed after epoch {start}")

    from tqdm import tqdm
    net.train()
    for epoch in range(start, epochs):
        t0, losses = time.perf_counter(), []
        bar = tqdm(range(args.steps_per_epoch), desc=f"{ratio}x epoch {epoch + 1}/{epochs}", leave=False,
                   disable=args.no_progress)
        for _ in bar:
            x, y, low = sample_batch(usable, probs, crop, batch, gen, ratio, args.brightness, args.spectral_jitter)
            x, y, low = (t.to(device, non_blocking=True) for t in (x, y, low))
            with amp:
                loss = (forward(net, x, None if args.no_consistency else low).float() - y).abs().mean() / SCALE
            if not math.isfinite(loss.item()):
                raise TrainingDiverged(f"{ratio}x: the loss is {loss.item()} at epoch {epoch + 1}: training diverged "
                                       f"(lower --lr); the last checkpoint is kept")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
            bar.set_postfix(l1=f"{losses[-1]:.4f}")
        v = validate(net, val, device, not args.no_consistency)
        if v is not None:  # no validation scene: the learning rate stays
            sched.step(v)
        history.append({"epoch": epoch + 1, "train_l1": float(np.mean(losses)), "val_l1": v,
                        "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
        log(f"{ratio}x epoch {epoch + 1}/{epochs}: train L1 {history[-1]['train_l1']:.5f}  "
            f"val L1 {'-' if v is None else f'{v:.5f}'}  "
            f"lr {history[-1]['lr']:.1e}  {history[-1]['seconds']:.0f} s")
        state = {"fingerprint": fp, "epoch": epoch + 1, "net": net.state_dict(), "opt": opt.state_dict(),
                 "sched": sched.state_dict(), "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                 "history": history, "spec": {"ratio": ratio, "blocks": args.blocks, "features": args.features}}
        with atomic_path(_ckpt(out, ratio)) as tmp:
            torch.save(state, tmp)
        on_checkpoint()
    return net.cpu().eval(), history


# --------------------------------------------------------------------------- the command

def main(args) -> int:
    """Train, holding --out for the run: a second sr-train into it is refused, naming this one."""
    with folder_lock(args.out, False, "sr-train run"):
        return train_run(args)


def train_run(args) -> int:
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    out = output_folder(args.out)
    # the run already in --out is refused, resumed or set aside before anything is written there
    resume, takeover = runs.take_over(out, [_ckpt(out, r) for r in (2, 6)], describe_checkpoint,
                                      resume=args.resume, if_present=args.resume_if_present, overwrite=args.overwrite)
    with takeover:
        return train_into(args, out, resume, takeover)


def train_into(args, out: Path, resume: bool, takeover) -> int:
    log_path = out / "train_log.txt"

    def log(msg: str) -> None:
        print(msg, flush=True)
        with open(log_path, "a") as f:
            f.write(msg + "\n")

    paths = scene_paths(args)
    sources = {str(p.name): content_digest(p) for p in paths}  # the run's fingerprint: what it was given
    loaded = scenes_mod.load(paths)
    train, val = split_scenes(loaded, args.val_scenes, args.exclude_scenes)
    # what the bundle says it saw: the inputs of the scenes it trained and validated on, never the
    # ones --exclude-scenes left out (a cross-validation's test fold stays unseen to sr-eval); every
    # file's bytes, names left out, so that sr-eval knows a training input under any other name
    used = {str(pc.path) for sc in (*train, *val) for pc in sc.pieces}
    seen_paths = [p for p in paths if str(p) in used]
    seen_sources = {str(p.name): sources[str(p.name)] for p in seen_paths}
    source_files = sorted(set().union(*(file_digests(p) for p in seen_paths)))
    log(f"sr-train: {len(loaded)} scene(s) from {len(paths)} input(s); training on {len(train)}, validating on "
        f"{len(val)} ({', '.join(s.key for s in val) or 'none'}), left out: {args.exclude_scenes or 'none'}")
    ratios = list(map(int, args.nets.split(",")))
    pairs = {r: pairs_for(r, train, args.degradation, getattr(args, f"crop{r}")) for r in ratios}
    for r in ratios:  # every network's options against the data before the first one trains
        check_crop(r, getattr(args, f"crop{r}"), pairs[r])
    nets, histories = {}, {}
    for ratio in ratios:
        nets[ratio], histories[ratio] = train_net(ratio, args, pairs[ratio], pairs_for(ratio, val, args.degradation),
                                                  sources, log, resume, takeover.release)
    if set(nets) != {2, 6}:
        log("only one network trained: no bundle written (a bundle holds both)")
        return 0
    options = {k: v for k, v in vars(args).items() if k != "func" and not callable(v)}
    meta = {"provenance": {"trained_by": "bigearth-sr sr-train", "options": options, "seed": args.seed,
                           "sources": seen_sources, "source_files": source_files, "degradation": args.degradation,
                           "train_scenes": [s.key for s in train], "val_scenes": [s.key for s in val],
                           "consistency": not args.no_consistency,
                           "torch": torch.__version__, "device": str(args.device), "amp": args.amp,
                           "val_l1": {str(r): h[-1]["val_l1"] if h else None for r, h in histories.items()},
                           "history": {str(r): h for r, h in histories.items()}}}
    path = save_bundle(out / "dsen2.npz", nets, meta, storage=args.storage)
    log(f"wrote {path} (sha256 {sha256_file(path)[:16]}…)")
    return 0
