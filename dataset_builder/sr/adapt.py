"""Adapting the DSen2 networks to one scene before they super-resolve it.

Wald's protocol needs no truth: an input degraded by one more grid level (its 20 m bands to
40 m and its 10 m bands to 20 m for the 2x network; everything by 6 for the 6x network, 60 m
to 360 m) is a training pair whose target is the input itself. Fine-tuning the shipped weights
on such pairs of the scene being built, for a bounded number of steps, teaches the networks
that scene's land cover, season and processing level, which the training scenes may lack.

The adapted weights belong to that scene alone: the build adapts a fresh copy per tile
(products) or per acquisition (BigEarthNet v1/v2 patch folders), the evaluation per piece, and
nothing adapted is kept or carried to another scene. Every draw comes from a generator seeded
by the scene's own pixels, so the same input gives the same adapted weights (in fp32, on the
same thread count). The guard still runs after the adapted networks.
"""
from __future__ import annotations

import copy
import hashlib
import math

import numpy as np
import torch

from . import consistency
from .inputs import net_input
from .model import SCALE, DSen2Net

DEFAULT_STEPS = 100
# the shipped recipe's crops (on the degraded 10 m grid) with smaller batches, and a learning
# rate a fifth of its training rate: the weights are moved, not retrained
CROP = {2: 32, 6: 48}
BATCH = {2: 8, 6: 4}
LR = 1e-4
TRIM = {2: 12, 6: 36}  # the 10 m grid of a pair is cut to a multiple of this (both nets' coarse grids align)


def net_forward(net: DSen2Net, x: torch.Tensor, low: torch.Tensor | None) -> torch.Tensor:
    """The network's output, moved onto its coarse input's consistency set when ``low`` is given
    (what training and adaptation optimise, and what the guard's last step does at inference)."""
    y = net(x)
    return y if low is None else consistency.project(y.float(), low, net.spec.ratio)


def wald_pair(ratio: int, b10, b20, b60) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(network input, target) on the degraded grid: every band degraded by ``ratio`` with the
    protocol's operator (``consistency.degrade``, equal to ``wald.degrade``), the target the
    band the network makes, as given. None when the piece is smaller than one crop."""
    m = TRIM[ratio]
    h, w = (min(b10.shape[1], b20.shape[1] * 2, b60.shape[1] * 6), min(b10.shape[2], b20.shape[2] * 2, b60.shape[2] * 6))
    h, w = h - h % m, w - w % m
    if min(h, w) // ratio < CROP[ratio]:
        return None
    cubes = [torch.as_tensor(np.ascontiguousarray(c[:, :h // f, :w // f]), dtype=torch.float32)
             for c, f in ((b10, 1), (b20, 2), (b60, 6))]
    low = [consistency.degrade(c, ratio) for c in cubes]
    x = net_input(ratio, low[0], low[1], low[2])
    return x, cubes[1] if ratio == 2 else cubes[2]


def scene_seed(pieces) -> int:
    """A seed from the scene's pixels: the same scene adapts the same way, another scene otherwise."""
    h = hashlib.sha256()
    for p in pieces:
        for c in p:
            h.update(np.ascontiguousarray(c, np.float32).tobytes())
    return int(h.hexdigest()[:15], 16)


def aligned_window(h: int, w: int, crop: int, ratio: int, gen: torch.Generator) -> tuple[int, int, int, int]:
    """A random crop of an (h, w) image for the ``ratio`` network, drawn in this order: its row
    and column on the coarse grid (multiples of ``ratio``, so its coarse input is whole pixels),
    a rotation k x 90 degrees and a flip (odd: flipped). Training and adaptation draw alike."""
    r = int(torch.randint(0, (h - crop) // ratio + 1, (1,), generator=gen)) * ratio
    c = int(torch.randint(0, (w - crop) // ratio + 1, (1,), generator=gen)) * ratio
    k, flip = torch.randint(0, 4, (2,), generator=gen).tolist()
    return r, c, k, flip


def _batch(pairs, area: torch.Tensor, ratio: int, gen: torch.Generator):
    """Random crops aligned to the coarse grid, rotated and flipped: (inputs, targets, coarse)."""
    crop, xs, ys = CROP[ratio], [], []
    for i in torch.multinomial(area, BATCH[ratio], replacement=True, generator=gen).tolist():
        x, y = pairs[i]
        r, c, k, flip = aligned_window(*y.shape[1:], crop, ratio, gen)
        pair = [torch.rot90(t[:, r:r + crop, c:c + crop], k, (1, 2)) for t in (x, y)]
        if flip % 2:
            pair = [t.flip(2) for t in pair]
        xs.append(pair[0])
        ys.append(pair[1])
    y = torch.stack(ys)
    return torch.stack(xs), y, consistency.degrade(y, ratio)


def adapt(nets: dict[int, DSen2Net], pieces, steps: int = DEFAULT_STEPS, lr: float = LR,
          device: str = "cpu") -> tuple[dict[int, DSen2Net], dict]:
    """Copies of ``nets`` fine-tuned for ``steps`` steps on the scene ``pieces`` ((b10, b20, b60)
    float32 reflectance x 10000 each) under Wald's protocol; the originals are untouched.
    Returns (nets, report): per network the steps run, the L1 of the first and last tenth of
    them, and the adapted weights' sha256; a network no piece is large enough for is left as
    it is, and the report says why."""
    pieces = list(pieces)
    seed = scene_seed(pieces)
    out, report = {}, {"steps": steps, "lr": lr, "seed": seed, "nets": {}}
    for ratio, net in sorted(nets.items()):
        pairs = [p for p in (wald_pair(ratio, *pc) for pc in pieces) if p is not None]
        if not pairs or steps <= 0:
            out[ratio] = net
            report["nets"][str(ratio)] = {"steps": 0, "why": (f"no piece is {CROP[ratio] * ratio} px at 10 m, the "
                                                              f"{ratio}x protocol's crop" if not pairs else "0 steps")}
            continue
        gen = torch.Generator().manual_seed(seed + ratio)
        tuned = copy.deepcopy(net).to(device=device, dtype=torch.float32, memory_format=torch.contiguous_format).train()
        opt = torch.optim.NAdam(tuned.parameters(), lr=lr)
        area = torch.tensor([float(y.shape[1] * y.shape[2]) for _, y in pairs])
        losses = []
        for _ in range(steps):
            x, y, low = (t.to(device) for t in _batch(pairs, area, ratio, gen))
            loss = (net_forward(tuned, x, low) - y).abs().mean() / SCALE
            if not math.isfinite(loss.item()):  # a scene that drives the loss off: its own weights are not used
                tuned = net
                losses = []
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        tuned = tuned.eval().to(memory_format=torch.channels_last)
        for p in tuned.parameters():
            p.requires_grad_(False)
        out[ratio] = tuned
        tenth = max(1, len(losses) // 10)
        report["nets"][str(ratio)] = {"steps": len(losses), "pairs": len(pairs),
                                      "l1_first": float(np.mean(losses[:tenth])) if losses else None,
                                      "l1_last": float(np.mean(losses[-tenth:])) if losses else None,
                                      "sha256": weights_digest(tuned)}
        if not losses:
            report["nets"][str(ratio)]["why"] = "the loss became non-finite: the shipped weights are used"
    return out, report


def weights_digest(net: DSen2Net) -> str:
    """sha256 of a network's tensors, by name, in fp32: what the manifest records of adapted weights."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()
