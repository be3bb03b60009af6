"""Reference trainer: ResNet-50 multilabel classification of the shards, data-parallel with
Horovod (or torch.distributed), the recipe of Sedona et al. 2019 after Goyal et al. 2017.

Plain functions, in the order they run; the flags and how to launch are in ``train_args.py``
(``--help``), the distributed set-up in ``distributed.py``.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

import shards
from bigearth import distinfo, runs, stopping
from bigearth.errors import InputError, ReportedError, run_command
from bigearth.files import atomic_path, folder_lock, output_folder, write_text
from bigearth.record import ARRAYS, RGB
from reference_train.checkpoint import CHECKPOINT, data_identity, load_checkpoint, read_checkpoint, save_checkpoint
from reference_train.distributed import make_engine
from reference_train.metrics import summary
from reference_train.model import build_model, param_groups, parse_layers
from reference_train.predict import predict, to_device
from reference_train.train_args import KEPT, get_args_parser  # the flags, in a module without torch
from reference_train.recipe import augment, fit_milestones, lr_at, scaled_lr, steps_per_epoch
from shards.index import shard_entries


class NonFiniteLoss(RuntimeError):
    pass


# --------------------------------------------------------------------------- set-up

def size_to_node(args) -> tuple[int, int]:
    """Fill ``args.threads`` and ``args.workers`` from this rank's share of the node
    (``bigearth.distinfo.size_to_node``; an explicit flag or OMP_NUM_THREADS wins). Returns
    (local size, usable cores) for the log."""
    args.threads, args.workers, local_size, cores = distinfo.size_to_node(args.threads, args.workers)
    return local_size, cores


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def mix_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] % 2**62)


def make_loader(args, split: str, engine):
    """The training loader: this rank's share of the split, reshuffled every epoch."""
    return shards.loader(args.data, split, batch_size=args.batch_size, num_workers=args.workers, shuffle=args.shuffle,
                         resampled=args.resampled, rank=engine.rank, world=engine.world, variant=args.variant,
                         labels=args.labels, normalize=False, seed=args.seed)


class SyntheticLoader:
    """Random uint16 batches of the variant's shape, made once and kept in memory."""

    def __init__(self, args, steps: int):
        g = torch.Generator().manual_seed(args.seed)
        cube = ARRAYS["data_super"][0]
        shapes = {"super": {"x": cube}, "rgb": {"x": (len(RGB), *cube[1:])},
                  "native": {k: ARRAYS[f"data_{k}"][0] for k in ("10m", "20m", "60m")}}[args.variant]
        x = {k: torch.randint(0, 10000, (args.batch_size, *s), generator=g, dtype=torch.int32).to(torch.uint16)
             for k, s in shapes.items()}
        self.x = x["x"] if args.variant != "native" else x
        self.y = (torch.rand(args.batch_size, args.labels, generator=g) < 0.1).float()
        self.steps = steps

    def __iter__(self):
        for _ in range(self.steps):
            yield self.x, self.y


# --------------------------------------------------------------------------- one epoch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def train_step(model, opt, scaler, x, y, normalizer, gen: torch.Generator, args, device) -> torch.Tensor:
    """One optimisation step on a uint16 batch: normalise and augment on the device, forward
    (under AMP if asked), BCE, backward, update. Returns the loss (on the device, not synced)."""
    x = normalizer(to_device(x, device, args.channels_last))
    y = y.to(device, non_blocking=True)
    x, y = augment(x, y, gen, args.mixup_alpha, rotate=not args.no_rotate, mode=args.mixup)
    amp_dtype = AMP_DTYPES.get(args.amp)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(x)
    loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
    opt.zero_grad()  # None grads (the default); Horovod's optimizer takes no argument
    if scaler is not None:
        scaler.scale(loss).backward()
        if hasattr(opt, "synchronize"):  # Horovod: reduce before unscaling, then step without reducing again
            opt.synchronize()
            scaler.unscale_(opt)
            with opt.skip_synchronize():
                scaler.step(opt)
        else:
            scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return loss


def stop_signal(engine) -> int | None:
    """The stop signal (SIGTERM, SIGHUP, Ctrl-C) any rank received while training, the same
    verdict on every rank (they must stop at the same step), or None."""
    sig = stopping.pending() or 0
    if engine.world > 1:  # a collective of one integer per step, beside the step's gradients
        sig = int(engine.gather(torch.tensor([sig], device=engine.device)).max())
    return sig or None


def train_one_epoch(model, opt, scaler, loader, normalizer, engine, args, epoch: int, steps: int, peak: float,
                    milestones, first_step: int = 0) -> dict:
    """One epoch of ``steps`` steps, from ``first_step`` (a run resumed where a stop left it: the
    batches before it were trained then, and the loader gives them again in the same order). A
    stop signal ends it after the step in flight: the row then has ``stopped_at`` (steps done)."""
    model.train()
    device = engine.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    checked = torch.zeros((), device=device, dtype=torch.float64)
    seen, t0, step, stopped = 0, time.perf_counter(), 0, None
    for step, (x, y) in enumerate(loader):
        if step >= steps:
            break
        if step < first_step:
            continue
        lr = lr_at(epoch + step / steps, peak, engine.world, args.warmup_epochs, milestones, args.gamma)
        for group in opt.param_groups:
            group["lr"] = lr
        gen = torch.Generator().manual_seed(mix_seed(args.seed, epoch, step, engine.rank))
        seed_everything(mix_seed(args.seed, epoch, step, engine.rank, 1))  # dropout: the same masks after a resume
        loss = train_step(model, opt, scaler, x, y, normalizer, gen, args, device)
        loss_sum += loss.detach().double()
        seen += y.shape[0]
        if (step + 1) % args.nan_check_every == 0 or step + 1 == steps:
            total = engine.sum(loss_sum.clone())  # every rank sees the same verdict
            if not math.isfinite(float(total)):
                raise NonFiniteLoss(f"loss became {float(total)} in epoch {epoch}, between steps {int(checked)} and "
                                    f"{step} (lr {lr:.4g}); the last good checkpoint is kept. Lower --base-lr or "
                                    f"lengthen --warmup-epochs")
            checked.fill_(step)
        if engine.rank == 0 and args.print_freq and (step + 1) % args.print_freq == 0:
            rate = seen / (time.perf_counter() - t0)
            print(f"epoch {epoch} step {step + 1}/{steps} lr {lr:.4f} loss {float(loss.detach()):.4f} "
                  f"{rate:.1f} img/s/rank", flush=True)
        if step + 1 < steps and (sig := stop_signal(engine)) is not None:  # the last step ends the epoch anyway
            stopped = (step + 1, sig)
            break
    if seen == 0:  # nothing to average, no learning rate reached: say why instead
        raise InputError(args.data, f"the {args.train_split!r} split gave rank {engine.rank} of {engine.world} no batch "
                                    f"(no sample in its share of the shards): write smaller shards, or use fewer ranks")
    seconds = time.perf_counter() - t0
    n_steps = min(step + 1, steps) - first_step
    mean_loss = float(engine.mean(loss_sum) / n_steps)
    row = {"epoch": epoch, "lr": lr, "train_loss": mean_loss, "images_per_s_per_rank": seen / seconds,
           "seconds": seconds, "steps": n_steps}
    if first_step:
        row["resumed_at_step"] = first_step  # the loss and rate are of the steps after it
    if stopped:
        row["stopped_at"], row["signal"] = stopped
    return row


def check_weights(model: nn.Module, epoch: int, lr: float) -> None:
    """A NonFiniteLoss when an update made a weight NaN or Inf (the same verdict on every rank:
    their weights are equal after each reduced step); the checkpoint of the epoch before is kept."""
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteLoss(f"the weights became non-finite in epoch {epoch} ({len(bad)} tensor(s), first {bad[0]}; "
                            f"lr {lr:.4g}): training diverged; the last good checkpoint is kept. Lower --base-lr or "
                            f"--lr, or lengthen --warmup-epochs")


NAME_BYTES = 96  # patch names travel between ranks as fixed-width byte rows


def validate(model, args, engine, normalizer) -> dict:
    """Validation on every rank at once: each scores its share of the split (every sample once
    over the ranks, plus the padding that evens the shares), the predictions are gathered, the
    padded repeats dropped by patch name, and the metrics are those of a one-process run."""
    loader = shards.loader(args.data, args.val_split, batch_size=args.batch_size, num_workers=args.workers, shuffle=0,
                           variant=args.variant, labels=args.labels, normalize=False, seed=args.seed,
                           rank=engine.rank, world=engine.world, with_meta=True)
    probs, targets, names = predict(model, loader, normalizer, engine.device, args.channels_last, with_names=True)
    if engine.world > 1:
        codes = np.zeros((len(names), NAME_BYTES), np.uint8)
        for i, n in enumerate(names):
            b = n.encode()[:NAME_BYTES]
            codes[i, :len(b)] = np.frombuffer(b, np.uint8)
        probs = engine.gather(torch.from_numpy(np.ascontiguousarray(probs, np.float32))).numpy()
        targets = engine.gather(torch.from_numpy(np.ascontiguousarray(targets, np.float32))).numpy()
        names = [bytes(c).rstrip(b"\0").decode() for c in engine.gather(torch.from_numpy(codes)).numpy()]
    keep = np.sort(np.unique(np.asarray(names, dtype=object), return_index=True)[1])  # drop the padding's repeats
    probs, targets = probs[keep], targets[keep]
    if not np.isfinite(probs).all():  # gathered: the same verdict on every rank
        raise NonFiniteLoss(f"the predictions on the {args.val_split!r} split are NaN or Inf: training diverged; the "
                            f"last good checkpoint is kept. Lower --base-lr or --lr, or lengthen --warmup-epochs")
    if not len(probs):
        return {}
    eps = 1e-7
    p = np.clip(probs, eps, 1 - eps)
    loss = float(-(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean())
    return {"val_loss": loss, **{f"val_{k}": v for k, v in summary(probs, targets).items()}}


# --------------------------------------------------------------------------- logs

def summary_writer(path: Path):
    """TensorBoard's event writer, without TensorFlow: tensorboard imports TensorFlow whenever it
    is installed (the tfds extra brings it: oneDNN and absl lines on every rank) unless its own
    "notf" marker module exists; the event files need only tensorboard's stub."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(path))


def write_logs(out: Path, history: list, tb) -> None:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    row = history[-1]
    if tb is not None:
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)):
                tb.add_scalar(k, v, row["epoch"])
        tb.flush()
    plot_curves(history, out / "curves.png")


def plot_curves(history: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    ep = [r["epoch"] for r in history]
    # markers: a run of one epoch is one point per curve, which a line alone does not draw
    style = {"marker": "o", "ms": 3}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    axes[0].plot(ep, [r["train_loss"] for r in history], label="train", **style)
    if any("val_loss" in r for r in history):
        axes[0].plot(ep, [r.get("val_loss", np.nan) for r in history], label="validation", **style)
    axes[0].set_title("loss (BCE)")
    for key in ("val_micro_f1", "val_macro_f1", "val_mAP"):
        if any(key in r for r in history):
            axes[1].plot(ep, [r.get(key, np.nan) for r in history], label=key[4:], **style)
    axes[1].set_title("validation")
    axes[2].plot(ep, [r["lr"] for r in history], **style)
    axes[2].set_title("learning rate (end of epoch)")
    for a in axes:
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if len(ep) == 1:  # matplotlib's own margin round one point is a twentieth of an epoch
            a.set_xlim(ep[0] - 1, ep[0] + 1)
        if a.get_legend_handles_labels()[0]:  # below the panel: never over a curve
            a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# --------------------------------------------------------------------------- main

def main(args) -> int:
    """Train, holding --output-dir for the run (rank 0 holds it): a second run into it is refused, naming this one."""
    with folder_lock(args.output_dir, False, "train run") if distinfo.rank_world()[0] == 0 else contextlib.nullcontext():
        return train_run(args)


def train_run(args) -> int:
    index, base = shards.read_index(args.data)  # data problems are named before any process group starts
    n_train = sum(e["samples"] for e in shard_entries(index, base, args.train_split))
    if n_train == 0 and not args.synthetic_data:
        raise InputError(base / shards.INDEX_NAME, f"the {args.train_split!r} split holds no sample")
    out = output_folder(args.output_dir)  # before any process group starts or any step is taken
    # a run already in the folder is refused, resumed or set aside (rank 0 moves it) before any rank
    # starts: a rerun never trains over a finished run unasked
    resume, takeover = runs.take_over(out, [out / CHECKPOINT], describe_checkpoint, resume=args.resume,
                                      if_present=args.resume_if_present, overwrite=args.overwrite,
                                      writer=distinfo.rank_world()[0] == 0)
    with takeover:
        return train_from(args, index, base, n_train, out, resume, takeover)


def describe_checkpoint(path: Path) -> str:
    """What a refusal says of the run a checkpoint holds: its epoch, or why it cannot be read."""
    try:
        state = read_checkpoint(path)
    except ReportedError as e:
        return f"unreadable: {e.problem if isinstance(e, InputError) else e}"
    epochs = state["args"].get("epochs") if isinstance(state.get("args"), dict) else None
    return f"epoch {state['epoch']}" + (f" of {epochs}" if epochs else "")


def train_from(args, index, base, n_train, out, resume: bool, takeover) -> int:
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    local_size, cores = size_to_node(args)  # before the engine: Horovod and Gloo start their threads then
    engine = make_engine(args.engine, device, args.timeout)
    if engine.rank == 0 and args.val_split and args.val_split not in index["splits"]:
        print(f"note: --val-split {args.val_split!r} is not in {args.data} (it holds {', '.join(index['splits'])}): "
              f"no validation", flush=True)
    peak = args.lr if args.lr is not None else scaled_lr(args.base_lr, engine.world, args.batch_size)
    milestones, schedule_note = fit_milestones(args.milestones, args.epochs)
    if schedule_note and engine.rank == 0:
        print(f"note: {schedule_note}", flush=True)
    # every rank gets ceil(n / world) samples of the split per epoch, each sample once (shards.load)
    loader = None if args.synthetic_data else make_loader(args, args.train_split, engine)
    steps = (loader.dataset.batches_this_rank(args.batch_size, args.workers) if loader is not None
             else steps_per_epoch(math.ceil(n_train / engine.world), args.batch_size))
    if args.steps_per_epoch:
        steps = min(steps, args.steps_per_epoch)
    if engine.rank == 0:
        print(f"engine {engine.name}: {engine.world} rank(s) on {engine.device}; global batch "
              f"{args.batch_size * engine.world} ({engine.world} x {args.batch_size}); lr {peak:.4g} "
              f"(= {args.base_lr} x {engine.world} x {args.batch_size} / 256"
              f"{', overridden by --lr' if args.lr is not None else ''}), warm-up {args.warmup_epochs} epochs from "
              f"{peak / engine.world:.4g}, x{args.gamma} at {list(milestones)}; {steps} steps/epoch over "
              f"{n_train} training patches; {local_size} rank(s) on this node of {cores} usable cores: "
              f"{torch.get_num_threads()} threads and {args.workers} loader workers per rank", flush=True)
        write_text(out / "args.json", json.dumps({k: v for k, v in vars(args).items() if not callable(v)}, indent=1))

    seed_everything(mix_seed(args.seed, engine.rank))
    raw = build_model(args.variant, args.labels, args.arch, args.dropout, parse_layers(args.layers)).to(engine.device)
    if args.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    model = engine.wrap_model(raw, args.global_bn)
    raw = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    opt = torch.optim.SGD(param_groups(raw, args.weight_decay), lr=peak, momentum=args.momentum,
                          nesterov=not args.no_nesterov)
    scaler = torch.amp.GradScaler(engine.device.type) if args.amp == "fp16" else None
    start, history, first_step = 0, [], 0
    ckpt = out / CHECKPOINT
    if resume:
        start, history, first_step = load_checkpoint(ckpt, raw, opt, scaler, args, data_identity(index, args))
        if first_step >= steps:  # stopped mid-epoch by a run with longer epochs: this epoch is done
            first_step = 0
        if engine.rank == 0:
            print(f"resumed from {ckpt}: epoch {start}" + (f", step {first_step}" if first_step else ""), flush=True)
            if start >= args.epochs:
                print(f"note: {ckpt} has trained {start} epoch(s), --epochs is {args.epochs}: nothing left to train "
                      f"(raise --epochs to train on)", file=sys.stderr, flush=True)
    opt = engine.wrap_optimizer(opt, raw, args.fp16_allreduce)
    engine.broadcast(raw, opt)
    if args.compile:
        model = torch.compile(model)
    normalizer = shards.Normalizer(index, args.variant).to(engine.device)
    loader = SyntheticLoader(args, steps) if args.synthetic_data else loader
    tb = None
    if engine.rank == 0:
        with contextlib.suppress(ImportError):
            tb = summary_writer(out / "tensorboard")
    try:
        # SIGTERM (a cluster's stop), SIGHUP and Ctrl-C wait for the step in flight; its checkpoint
        # is written, then the run stops as every command does (a second signal stops at once)
        with stopping.deferred():
            for epoch in range(start, args.epochs):
                if hasattr(loader, "dataset"):
                    loader.dataset.set_epoch(epoch)
                row = train_one_epoch(model, opt, scaler, loader, normalizer, engine, args, epoch, steps, peak,
                                      milestones, first_step if epoch == start else 0)
                check_weights(raw, epoch, row["lr"])  # the last step's update may diverge after its loss was checked
                if "stopped_at" in row:  # mid-epoch: the epoch's position, no history row, no validation
                    if engine.rank == 0:
                        save_checkpoint(ckpt, raw, opt, scaler, epoch, history, args, data_identity(index, args),
                                        step=row["stopped_at"])
                        takeover.release()  # the run replaced by --overwrite, kept until now
                        print(f"checkpoint written at epoch {epoch} step {row['stopped_at']}/{steps}: {ckpt}",
                              file=sys.stderr, flush=True)
                    raise stopping.Stopped(row["signal"])
                if args.val_split and args.val_split in index["splits"]:
                    row.update(validate(raw, args, engine, normalizer))  # every rank takes part
                if engine.rank == 0:
                    history.append(row)
                    save_checkpoint(ckpt, raw, opt, scaler, epoch + 1, history, args, data_identity(index, args))
                    takeover.release()
                    write_logs(out, history, tb)
                    print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                          flush=True)
                engine.barrier()
                if epoch + 1 < args.epochs and (sig := stop_signal(engine)) is not None:
                    raise stopping.Stopped(sig)  # during validation or the checkpoint: it is written
    except NonFiniteLoss as e:
        if engine.rank == 0:
            print(f"stopped: {e} ({ckpt if ckpt.exists() else 'no checkpoint yet'})", file=sys.stderr, flush=True)
        return 3
    finally:
        if tb is not None:
            tb.close()
        engine.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, get_args_parser().parse_args(), kept=KEPT))
