"""The training recipe of Sedona et al. 2019 after Goyal et al. 2017, as pure functions:
the learning-rate rule and schedule, rotations and flips, and mixup."""
from __future__ import annotations

import math

import numpy as np
import torch

from reference_train.train_args import MIXUP_MODES  # defined with the flag that chooses one


def scaled_lr(base: float = 0.1, workers: int = 1, batch_per_worker: int = 64) -> float:
    """lr = base * k * n / 256 (Goyal et al.'s linear scaling rule; base 0.1 for 256 images)."""
    return base * workers * batch_per_worker / 256


PAPER_MILESTONES = (30, 60, 80)  # of the paper's 100 epochs


def fit_milestones(milestones, epochs: int) -> tuple[tuple[int, ...], str | None]:
    """The milestones a run uses, and a note saying why when they are not as given. Not given
    (None): the paper's 30, 60, 80, or, for a run of 30 epochs or fewer (where none of those
    would be reached and the rate would never decay), the same fractions of its own epochs
    (10 epochs: 3, 6, 8). Given: as given, with a note when none falls within the run."""
    if milestones is None:
        if epochs > PAPER_MILESTONES[0]:
            return PAPER_MILESTONES, None
        scaled = {max(1, round(m * epochs / 100)) for m in PAPER_MILESTONES}
        fitted = tuple(sorted({m for m in scaled if m < epochs} or {max(1, epochs - 1)}))
        return fitted, (f"--milestones not given and --epochs {epochs} ends before the paper's first (30 of 100): the "
                        f"rate decays at epochs {','.join(map(str, fitted))} instead (the same fractions of this run; "
                        f"give --milestones to choose)")
    milestones = tuple(milestones)
    if not any(0 < m < epochs for m in milestones):
        return milestones, (f"--milestones {','.join(map(str, milestones))}: none falls within the run's {epochs} "
                            f"epoch(s), so the learning rate never decays (as asked)")
    return milestones, None


def lr_at(epoch: float, peak: float, workers: int = 1, warmup_epochs: float = 5.0,
          milestones=PAPER_MILESTONES, gamma: float = 0.1) -> float:
    """Learning rate at a fractional epoch: a gradual warm-up, per iteration, from the one-worker
    rate ``peak / workers`` to ``peak`` over ``warmup_epochs``, then x ``gamma`` at each milestone."""
    if epoch < warmup_epochs:
        start = peak / workers
        return start + (peak - start) * epoch / warmup_epochs
    return peak * gamma ** sum(epoch >= m for m in milestones)


def rot_flip(x, k: torch.Tensor, flip: torch.Tensor):
    """Rotate sample i by k[i] * 90 degrees and then mirror it left-right where flip[i]; for a
    dict of cubes (the native variant) every cube of a sample gets the same transform."""
    if isinstance(x, dict):
        return {name: rot_flip(v, k, flip) for name, v in x.items()}
    out = x.clone()
    for r in range(1, 4):
        idx = (k == r).nonzero().flatten()
        if len(idx):
            out[idx] = torch.rot90(x[idx], r, dims=(-2, -1))
    idx = flip.nonzero().flatten()
    if len(idx):
        out[idx] = out[idx].flip(-1)
    return out


def mixup(x, y: torch.Tensor, lam, perm: torch.Tensor):
    """lam * (x, y) + (1 - lam) * (x, y)[perm]: inputs and labels mixed alike (Zhang et al. 2018).
    ``lam`` is one number for the batch or one per sample (a tensor of the batch's length)."""
    def mix(v):
        w = lam.to(v.dtype).reshape(-1, *([1] * (v.dim() - 1))) if torch.is_tensor(lam) else lam
        return w * v + (1 - w) * v[perm]
    if isinstance(x, dict):
        return {k: mix(v) for k, v in x.items()}, mix(y)
    return mix(x), mix(y)




def augment(x, y: torch.Tensor, gen: torch.Generator, alpha: float, rotate: bool = True, mode: str = "per-patch"):
    """The random transforms of one batch, drawn from ``gen`` (seeded per epoch, step and rank,
    so a resumed run repeats them exactly). Mixup draws lambda ~ Beta(alpha, alpha) for each
    patch, as the paper does (``mode="per-batch"``: one lambda for the whole batch)."""
    if mode not in MIXUP_MODES:
        raise ValueError(f"mixup mode must be one of {MIXUP_MODES}, got {mode!r}")
    b = y.shape[0]
    if rotate:
        k = torch.randint(0, 4, (b,), generator=gen)
        flip = torch.randint(0, 2, (b,), generator=gen).bool()
        dev = y.device
        x = rot_flip(x, k.to(dev), flip.to(dev))
    if alpha > 0:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
        if mode == "per-patch":
            lam = torch.from_numpy(rng.beta(alpha, alpha, size=b)).float().to(y.device)
        else:
            lam = float(rng.beta(alpha, alpha))
        perm = torch.randperm(b, generator=gen).to(y.device)
        x, y = mixup(x, y, lam, perm)
    return x, y


def steps_per_epoch(samples_per_rank: int, batch: int) -> int:
    return max(1, math.ceil(samples_per_rank / batch))
