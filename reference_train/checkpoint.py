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
                    data: dict | None = None, step: int = 0) -> None:
    """Atomically: written to a temporary name, then renamed over the last checkpoint. Only
    tensors and plain values, so that it loads with ``weights_only=True``. ``step``: the steps of
    ``epoch`` already trained (a run stopped mid-epoch), 0 at an epoch's end."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else None,
             "epoch": epoch,  # the next epoch to run (or the one stopped in, from ``step``)
             # shards are re-shuffled from (seed, epoch): the same batches come again in the same order
             "data_position": {"epoch": epoch, "step": step},
             "rng": {"seed": args.seed, "scheme": "every rank reseeds from (seed, epoch, step, rank) at each step"},
             "history": history, "args": {k: v for k, v in vars(args).items() if not callable(v)},
             "data": data or {}}
    # a full disk is named (and the last good checkpoint, never overwritten by a partial one, stays)
    with disk_full_named(path), atomic_path(path) as tmp:
        torch.save(state, tmp)


# what the checkpoint's tensors depend on: resuming or evaluating with other values cannot work
MODEL_KEYS = ("variant", "labels", "arch", "layers")


VARIANTS = ("super", "rgb", "native")
LABEL_COUNTS = (19, 43)


def check_state(path: Path, state: dict) -> None:
    """What a checkpoint says of itself, checked before anything is built from it: the model's
    architecture, variant and label count are ones this trainer makes, the epoch is a count its
    run could reach, and every weight is a finite tensor. Each failure is one line naming it."""
    from .model import ARCHS

    saved = state["args"]
    if not isinstance(saved, dict):
        raise InputError(path, f"its 'args' is a {type(saved).__name__}, not the run's options")
    checks = (("arch", ARCHS), ("variant", VARIANTS), ("labels", LABEL_COUNTS))
    for key, allowed in checks:
        if saved.get(key) not in allowed or isinstance(saved.get(key), bool):
            raise InputError(path, f"its {key} is {saved.get(key)!r}, not one this trainer makes "
                                   f"({', '.join(map(str, allowed))})")
    epoch, epochs = state["epoch"], saved.get("epochs")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise InputError(path, f"its epoch is {epoch!r}, not a count of epochs (an integer >= 0)")
    if isinstance(epochs, int) and epoch > epochs:
        raise InputError(path, f"its epoch is {epoch}, past the {epochs} epochs of the run that wrote it")
    position = state.get("data_position") or {"epoch": epoch, "step": 0}
    step = position.get("step") if isinstance(position, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0 or position.get("epoch") != epoch:
        raise InputError(path, f"its data_position is {position!r}, not a step (an integer >= 0) of epoch {epoch}")
    if step and isinstance(epochs, int) and epoch >= epochs:
        raise InputError(path, f"its data_position is step {step} of epoch {epoch}, past the {epochs} epochs of the "
                               f"run that wrote it")
    if not isinstance(state["history"], list):
        raise InputError(path, "its history is not a list of epochs")
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise InputError(path, "its model is not a set of named tensors")
    for name, t in weights.items():
        if t.is_floating_point():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise InputError(path, f"tensor {name} has {bad} non-finite value(s) (NaN or infinite): the weights "
                                       f"are damaged or the run diverged")


def read_checkpoint(path: Path, args=None, data: dict | None = None) -> dict:
    """A checkpoint as data (tensors and plain values only; see ``bigearth.files.load_torch``),
    checked to be one of this trainer's and, given ``args``, of the same model; given ``data``
    (resuming), trained on the same shards."""
    state = load_torch(path, "checkpoint")
    if not isinstance(state, dict) or not {"model", "epoch", "args", "history"} <= set(state):
        raise InputError(path, "not a reference_train checkpoint (it lacks model, epoch, args or history)")
    check_state(path, state)
    if args is not None:
        saved = state["args"]
        differ = [f"--{k.replace('_', '-')} {saved.get(k)!r} there, {getattr(args, k)!r} here" for k in MODEL_KEYS
                  if saved.get(k) != getattr(args, k)]
        if differ:
            raise InputError(path, "checkpoint of another model: " + "; ".join(differ)
                             + " (use the same options, --overwrite to start a new run in its place, or another --output-dir)")
    saved_data = state.get("data") or {}
    if data is not None and saved_data:
        differ = [f"{k} {saved_data.get(k)!r} there, {v!r} here" for k, v in data.items() if saved_data.get(k) != v]
        if differ:
            raise InputError(path, "checkpoint of a run on other data: " + "; ".join(differ)
                             + " (resuming would mix two runs; --overwrite starts a new run in its place, or use another --output-dir)")
    return state


def load_weights(path: Path, model: nn.Module, weights: dict) -> None:
    """``weights`` into ``model``; when they do not fit, one line names the first tensor that
    differs (and, for the classifier's head, both label counts)."""
    want = model.state_dict()
    shapes = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in want.items()
              if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    missing = [k for k in want if k not in weights]
    extra = [k for k in weights if k not in want]
    if shapes or missing or extra:
        what = []
        if shapes:
            k, there, here = shapes[0]
            what.append(f"tensor {k} is {there} there, {here} here" + (
                f" (a head of {there[0]} labels there, {here[0]} here)" if k == HEAD and there and here else "")
                + (f", and {len(shapes) - 1} more differ" if len(shapes) > 1 else ""))
        if missing:
            what.append(f"{len(missing)} tensor(s) of the model absent there (first: {missing[0]})")
        if extra:
            what.append(f"{len(extra)} tensor(s) there the model lacks (first: {extra[0]})")
        raise InputError(path, "its weights do not fit the model: " + "; ".join(what))
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as e:
        raise InputError(path, f"its weights do not fit the model ({' '.join(str(e).split())[:500]})") from None


HEAD = "fc.1.weight"  # the classifier's last layer (model.build_model): one row per label


def load_checkpoint(path: Path, model: nn.Module, opt, scaler, args, data: dict | None = None
                    ) -> tuple[int, list, int]:
    """(the epoch to run, the history, the steps of that epoch already trained) after loading the
    weights and the optimizer's state."""
    state = read_checkpoint(path, args, data)
    load_weights(path, model, state["model"])
    try:
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise InputError(path, f"its optimizer state does not fit ({str(e).splitlines()[0][:300]})") from None
    return int(state["epoch"]), list(state["history"]), int((state.get("data_position") or {}).get("step", 0))
