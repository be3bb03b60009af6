"""DSen2 inference over images of any size: the ``dsen2`` upsampler.

The networks run on tiles (a core plus a margin of the receptive-field radius on every side,
all tiles of one size so they batch), and each tile contributes only its core. A core's pixels
see exactly the context they would see in a whole-image run, and convolutions pad with zeros only
at the image's own borders, so in fp32 the tiled result equals the whole-image one (tested).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from bigearth.record import BANDS_20M, BANDS_60M

from ..interpolate import BANDS_SR, bilinear
from . import weights as weights_io
from .model import DSen2Net

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def upsample_stack(cube: np.ndarray | torch.Tensor, f: int) -> torch.Tensor:
    """(C, h, w) -> (C, h*f, w*f) float32, bilinear on pixel centres (the builder's bilinear)."""
    cube = torch.as_tensor(cube, dtype=torch.float32)
    out = torch.empty((cube.shape[0], cube.shape[1] * f, cube.shape[2] * f), dtype=torch.float32)
    for k in range(cube.shape[0]):
        bilinear(cube[k].contiguous(), f, out[k])
    return out


def net_input(ratio: int, b10, b20, b60=None, up20: torch.Tensor | None = None) -> torch.Tensor:
    """The stacked input of the 2x (10 m + 20 m up) or 6x (10 m + 20 m up + 60 m up) network."""
    parts = [torch.as_tensor(b10, dtype=torch.float32), upsample_stack(b20, 2) if up20 is None else up20]
    if ratio == 6:
        parts.append(upsample_stack(b60, 6))
    return torch.cat(parts)


def run_tiled(net: DSen2Net, x: torch.Tensor, core: int = 256, batch: int = 8, device="cpu", precision="fp32",
              region: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """``net`` over ``x`` (C, H, W) tile by tile: (out_bands, H, W) float32 on the CPU.

    ``region`` (r0, r1, c0, c1) limits the work to the pixels that will be used; the rest of
    the output is left zero. Tiles go through the network ``batch`` at a time.
    """
    _, h, w = x.shape
    r0, r1, c0, c1 = region or (0, h, 0, w)
    m = net.spec.radius
    out = torch.zeros((net.spec.out_bands, h, w), dtype=torch.float32)
    rows = [(a, b, p + r0, q + r0) for a, b, p, q in _windows_in(r1 - r0, r0, h, core, m)]
    cols = [(a, b, p + c0, q + c0) for a, b, p, q in _windows_in(c1 - c0, c0, w, core, m)]
    tiles = [(r, c) for r in rows for c in cols]
    dev = torch.device(device)
    amp = _autocast(dev, precision)
    with torch.inference_mode():
        for i in range(0, len(tiles), batch):
            group = tiles[i:i + batch]  # every window of an axis has one length: the tiles stack
            xb = torch.stack([x[:, ra:rb, ca:cb] for (ra, rb, _, _), (ca, cb, _, _) in group]).to(dev)
            with amp:
                yb = net(xb).float().cpu()
            for k, ((ra, _, p, q), (ca, _, u, v)) in enumerate(group):
                out[:, p:q, u:v] = yb[k, :, p - ra:q - ra, u - ca:v - ca]
    return out


def _windows_in(span: int, offset: int, n: int, core: int, margin: int):
    """Axis windows whose cores tile [offset, offset + span) of an axis of length n; the windows
    may reach outside the span (that is context) but not outside [0, n)."""
    out = []
    length = min(n, min(core, span) + 2 * margin)
    for p in range(0, span, core):
        q = min(span, p + core)
        # shifted back inside the axis at its ends; it still holds the margin on both sides
        a = min(max(offset + p - margin, 0), n - length)
        out.append((a, a + length, p, q))
    return out


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def resolve_precision(device: str, precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    return precision


class DSen2:
    """The ``dsen2`` upsampler: 20 m bands by the 2x network, 60 m bands by the 6x network."""

    name = "dsen2"
    needs_10m = True

    def __init__(self, weights: str | None = None, device: str = "cpu", precision: str = "auto",
                 core: int | None = None, batch: int | None = None):
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--sr-device cuda, but torch sees no CUDA device")
        self.nets, self.provenance = weights_io.load(weights)
        self.device, self.precision = device, resolve_precision(device, precision)
        # CPU: about 200k pixels x 32 features per batch keep the activations in cache (measured
        # with F = 32: 4 tiles of 200 + margins run 1.3x faster than whole 1200 px images, 8
        # tiles of 360 run 0.6x); a GPU wants large batches
        gpu = torch.device(device).type == "cuda"
        feats = max(n.spec.features for n in self.nets.values())
        self.core, self.batch = core or (512 if gpu else 200), batch or (16 if gpu else max(1, 128 // feats))
        for n in self.nets.values():
            n.to(device)
        radius = max(n.spec.radius for n in self.nets.values())
        # the network's radius, plus the 6 px next to a cut where the 60 m bilinear input is clamped
        self.halo = math.ceil((radius + 6) / 6)

    def describe(self) -> dict:
        """What the archive and manifest record about the method."""
        return {"method": self.name, "precision": self.precision, **self.provenance}

    def __call__(self, b10, b20, b60, region=None):
        up20 = upsample_stack(b20, 2)
        kw = dict(core=self.core, batch=self.batch, device=self.device, precision=self.precision, region=region)
        sr20 = run_tiled(self.nets[2], net_input(2, b10, b20, up20=up20), **kw)
        sr60 = run_tiled(self.nets[6], net_input(6, b10, b20, b60, up20=up20), **kw)
        out = np.empty((len(BANDS_SR), *sr20.shape[1:]), np.float32)
        for cube, names in ((sr20, BANDS_20M), (sr60, BANDS_60M)):
            for k, name in enumerate(names):
                out[BANDS_SR.index(name)] = cube[k].numpy()
        return out
