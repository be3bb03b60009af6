"""The trainer's checkpoints: written atomically, holding only tensors and plain values, read
back as data (``weights_only=True``) and checked against the run that resumes or evaluates them."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bigearth.errors import InputError
from bigearth.files import atomic_path, disk_full_named, load_torch

CHECKPOINT = "checkpoint.pt"


def data_identity(index: dict, args) -> dict:
    """What the run trains on: the archive behind the shards (its sha256) and the split."""
    return {"archive_sha256": index.get("source", {}).get("sha256"), "train_split": args.train_split,
            "seed": args.seed}


def save_checkpoint(path: Path, model: nn.Module, opt, scaler, epoch: int, history: list, args,
                    data: dict | None = None) -> None:
    """Atomically: written to a temporary name, then renamed over the last checkpoint. Only
    tensors and plain values, so that it loads with ``weights_only=True``."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else None,
             "epoch": epoch,  # the next epoch to run
             "data_position": {"epoch": epoch, "step": 0},  # shards are re-shuffled from (seed, epoch)
             "rng": {"seed": args.seed, "scheme": "every rank reseeds from (seed, epoch, rank) at each epoch"},
             "history": history, "args": {k: v for k, v in vars(args).items() if not callable(v)},
             "data": data or {}}
    # a full disk is named (and the last good checkpoint, never overwritten by a partial one, stays)
    with disk_full_named(path), atomic_path(path) as tmp:
        torch.save(state, tmp)


# what the checkpoint's tensors depend on: resuming or evaluating with other values cannot work
MODEL_KEYS = ("variant", "labels", "arch", "layers")


def read_checkpoint(path: Path, args=None, data: dict | None = None) -> dict:
    """A checkpoint as data (tensors and plain values only; see ``bigearth.files.load_torch``),
    checked to be one of this trainer's and, given ``args``, of the same model; given ``data``
    (resuming), trained on the same shards."""
    state = load_torch(path, "checkpoint")
    if not isinstance(state, dict) or not {"model", "epoch", "args", "history"} <= set(state):
        raise InputError(path, "not a reference_train checkpoint (it lacks model, epoch, args or history)")
    if args is not None:
        saved = state["args"]
        differ = [f"--{k.replace('_', '-')} {saved.get(k)!r} there, {getattr(args, k)!r} here" for k in MODEL_KEYS
                  if saved.get(k) != getattr(args, k)]
        if differ:
            raise InputError(path, "checkpoint of another model: " + "; ".join(differ)
                             + " (use the same options, or another --output-dir)")
    saved_data = state.get("data") or {}
    if data is not None and saved_data:
        differ = [f"{k} {saved_data.get(k)!r} there, {v!r} here" for k, v in data.items() if saved_data.get(k) != v]
        if differ:
            raise InputError(path, "checkpoint of a run on other data: " + "; ".join(differ)
                             + " (resuming would mix two runs; use another --output-dir)")
    return state


def load_weights(path: Path, model: nn.Module, weights: dict) -> None:
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as e:
        raise InputError(path, f"its weights do not fit the model ({str(e).splitlines()[0][:300]})") from None


def load_checkpoint(path: Path, model: nn.Module, opt, scaler, args, data: dict | None = None) -> tuple[int, list]:
    state = read_checkpoint(path, args, data)
    load_weights(path, model, state["model"])
    try:
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise InputError(path, f"its optimizer state does not fit ({str(e).splitlines()[0][:300]})") from None
    return int(state["epoch"]), list(state["history"])
