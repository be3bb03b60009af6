"""DSen2 inference over images of any size: the ``dsen2`` upsampler.

The networks run on tiles (a core plus a margin of the receptive-field radius on every side,
all tiles of one size so they batch), and each tile contributes only its core. A core's pixels
see exactly the context they would see in a whole-image run; at the image's own borders the
input is mirrored (so a constant image meets no zero padding), and in fp32 the tiled result
equals the whole-image one (tested).

Then the guard, which makes the method do no harm where its networks are unsure (see
``docs/super-resolution.md``): the detail a network adds to the interpolated band is weighted
by how much detail the 10 m bands carry there (:func:`detail_weight`: none where they are flat,
as on calm water), held to the energy the coarse band's own finest octave allows
(:func:`budget_weight`), and the result is moved onto the set of images that degrade, by the
protocol's operator, to the coarse input (``consistency.project``). All three steps are local
with a known reach (:func:`guard_reach`, :func:`guard_context`), so the builder's strip-by-strip
runs stay bit-identical to whole-tile ones.
"""
from __future__ import annotations

import copy
import functools
import math
import threading
import weakref

import numpy as np
import torch

from bigearth.errors import InputError
from bigearth.record import BANDS_20M, BANDS_60M

from ..interpolate import BANDS_SR
from . import adapt as adapt_mod, consistency
from .consistency import reflect_index
from . import weights as weights_io
from .inputs import net_input, upsample_stack  # noqa: F401  (net_input: training builds its pairs with it)
from .model import DSen2Net

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Detail in the 10 m bands (RMS of their 3x3 high-pass over 5x5 pixels, reflectance x 10000)
# below which a network's detail is damped: w = g^2 / (g^2 + DETAIL_FLOOR^2). 10 is about twice
# the 10 m bands' noise over dark targets: detail at the noise level is noise, and a network
# that transfers it paints the sensor's noise into the coarse bands (calm water).
DETAIL_FLOOR = 10.0
WEIGHT_RADIUS = 3  # the 3x3 high-pass and the 5x5 mean


def _box_axis(a: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Mean over 2r + 1 pixels along ``dim``, edges reflected, as shifted-slice sums (local, bit for
    bit; measured 3x faster here than a depthwise convolution of one channel)."""
    n = a.shape[dim]
    ap = a.index_select(dim, reflect_index(n, r))
    out = ap.narrow(dim, 0, n).clone()
    for i in range(1, 2 * r + 1):
        out += ap.narrow(dim, i, n)
    return out / (2 * r + 1)


def _box(a: torch.Tensor, r: int) -> torch.Tensor:
    return _box_axis(_box_axis(a, r, a.ndim - 2), r, a.ndim - 1)


def detail_weight(b10: torch.Tensor, floor: float = DETAIL_FLOOR) -> torch.Tensor:
    """(H, W) weights in [0, 1) from the 10 m bands (4, H, W): how far to trust guided detail."""
    b10 = b10.to(torch.float32)
    hp = b10 - _box(b10, 1)
    g2 = _box(hp * hp, 2).mean(0)
    return g2 / (g2 + floor * floor)


def budget(s: int) -> float:
    """How much detail energy a band may gain between its grid and 10 m, in units of the energy of
    its own finest octave: natural scenes have power spectra close to 1/f^2, i.e. about equal
    energy per octave, and log2(s) octaves lie between the grids; one octave more is the margin.
    Fixed by that argument, not fitted."""
    return math.log2(s) + 1.0


def budget_weight(detail: torch.Tensor, coarse: torch.Tensor, s: int) -> torch.Tensor:
    """(C, H, W) factors <= 1 that keep the added ``detail`` (10 m grid) within the budget set by
    the ``coarse`` band's own local high-pass energy (its grid, 3x3 high-pass over 5x5 pixels).
    A network that learned detail from imagery unlike the input (other processing levels, other
    sensors) adds more than the coarse band shows it has; this takes the excess back. Measured on
    a top-of-atmosphere scene no network had seen: 6x RMSE 130 -> 66 against bicubic's 107."""
    hp = coarse - _box(coarse, 1)
    allowed = budget(s) * _box(hp * hp, 2).repeat_interleave(s, -2).repeat_interleave(s, -1)
    added = _box(detail * detail, s)
    return torch.where(added > allowed, (allowed / added.clamp_min(1e-12)).sqrt(), torch.ones_like(added))


def guard(sr: torch.Tensor, up: torch.Tensor, coarse: torch.Tensor, ratio: int, weight: torch.Tensor | None) -> torch.Tensor:
    """The network's output ``sr`` made safe. It is first moved onto the consistency set of
    ``coarse`` (``ratio`` x coarser): that is the estimate the networks were trained to give
    (``sr-train`` puts the step inside the forward pass, so what it removes was never penalised;
    measured: a network trained in bf16 gave raw outputs 765 DN off and consistent ones 39 DN off
    on a held-out scene, and weighing its raw detail clipped it to 0.60 x bicubic's RMSE instead of
    0.45). Its detail over the interpolation ``up`` is then weighted by ``weight`` (the 10 m
    bands' detail), held to the coarse band's detail budget, and the result moved onto the
    consistency set again. (Freeing only the network's detail of what the input sees, and not
    the interpolation's own correction, was measured too: 38.7 and 52.2 DN on two held-out
    scenes against 37.9 and 50.6 this way.)"""
    sr = consistency.project(sr, coarse, ratio)
    detail = sr - up
    if weight is not None:
        detail = weight * detail
    detail = detail * budget_weight(detail, coarse, ratio)
    return consistency.project(up + detail, coarse, ratio)


def guard_reach(s: int) -> int:
    """How far (10 m pixels) the guard's output at a pixel reaches into the networks' output: the
    first consistency step, the budget's energy window, the second step."""
    return 2 * consistency.radius(s) + s


# How far outside its input's own range a super-resolved band may reach, as a share of that range
# plus a floor: bicubic overshoots an edge by at most ~0.3 of its step. The guard holds each pixel
# to this about its own coarse neighbourhood (:func:`clamp_to_neighbourhood`); past it over the
# whole input, an output comes from broken weights (:func:`check_output`, without the guard).
RANGE_SHARE, RANGE_FLOOR = 1.0, 1000.0
NEIGHBOURHOOD = 1  # coarse pixels on each side of a pixel's own whose range bounds it


def clamp_to_neighbourhood(sr: torch.Tensor, coarse: torch.Tensor, s: int) -> torch.Tensor:
    """``sr`` (C, H, W, the 10 m grid of ``coarse``, ``s`` x coarser) with each pixel held within
    the range of the coarse pixels around its own (3 x 3), widened by ``RANGE_SHARE`` of that
    range plus ``RANGE_FLOOR``. Budget and consistency bound a
    network's detail in energy, not pointwise: a 6 x 128 network gave one B01 pixel of 4,985 DN
    where the coarse input held at most 2,114 and the truth 2,844 (a held-out real patch; the
    default network did the same to 2 of 28,790 v1 patches). :func:`check_output` refused such
    an output, failing the patch or the tile it was in; the bound is now the pixel's own
    neighbourhood's, and only values past it move. The window's reach (s 10 m pixels) lies within the guard's context."""
    k = 2 * NEIGHBOURHOOD + 1
    c = coarse.unsqueeze(0)
    hi = torch.nn.functional.max_pool2d(c, k, 1, NEIGHBOURHOOD)[0]
    lo = -torch.nn.functional.max_pool2d(-c, k, 1, NEIGHBOURHOOD)[0]
    slack = RANGE_SHARE * (hi - lo) + RANGE_FLOOR
    lo, hi = ((b.repeat_interleave(s, -2).repeat_interleave(s, -1)) for b in (lo - slack, hi + slack))
    return torch.maximum(torch.minimum(sr, hi), lo)


def check_output(out: np.ndarray, b20: np.ndarray, b60: np.ndarray, weights) -> None:
    """Whatever the weights, nothing non-finite or out of range reaches an archive: each
    super-resolved band must be finite and within its coarse input's range widened by
    ``RANGE_SHARE`` of it plus ``RANGE_FLOOR`` DN, else an InputError naming the weights."""
    files = ", ".join(map(str, weights))
    bad = int((~np.isfinite(out)).sum())
    if bad:
        raise InputError(files, f"DSen2 produced {bad} non-finite value(s) with these weights; nothing was written")
    for coarse, names in ((b20, BANDS_20M), (b60, BANDS_60M)):
        lo, hi = coarse.min(axis=(1, 2)).astype(np.float64), coarse.max(axis=(1, 2)).astype(np.float64)
        slack = RANGE_SHARE * (hi - lo) + RANGE_FLOOR
        for k, name in enumerate(names):
            band = out[BANDS_SR.index(name)]
            got_lo, got_hi = float(band.min()), float(band.max())
            if got_lo < lo[k] - slack[k] or got_hi > hi[k] + slack[k]:
                raise InputError(files, f"DSen2 produced {name} values in [{got_lo:.0f}, {got_hi:.0f}] from an input in "
                                        f"[{lo[k]:.0f}, {hi[k]:.0f}]: out of any plausible range with these weights; "
                                        f"nothing was written")


def guard_context(s: int) -> int:
    """How far it reaches into the coarse band (10 m pixels): the budget's 3 + 2 coarse pixels, then
    the last step; or the first step, which reads it as far as the output reaches into the
    networks'."""
    return max(consistency.radius(s) + s + 3 * s, guard_reach(s))


def run_tiled(net: DSen2Net, x: torch.Tensor, core: int = 256, batch: int = 8, device="cpu", precision="fp32",
              region: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """``net`` over ``x`` (C, H, W) tile by tile: (out_bands, H, W) float32 on the CPU.

    ``region`` (r0, r1, c0, c1) limits the work to the pixels that will be used; the rest of
    the output is left zero. Tiles go through the network ``batch`` at a time.
    """
    m = net.spec.radius
    _, h0, w0 = x.shape
    r0, r1, c0, c1 = region or (0, h0, 0, w0)
    # the image's own borders are mirrored (symmetric, as the builder's context is), not zero-padded
    x = x[:, reflect_index(h0, m)][:, :, reflect_index(w0, m)]
    r0, r1, c0, c1 = r0 + m, r1 + m, c0 + m, c1 + m
    _, h, w = x.shape
    out = torch.zeros((net.spec.out_bands, h, w), dtype=torch.float32)
    rows = [(a, b, p + r0, q + r0) for a, b, p, q in _windows_in(r1 - r0, r0, h, core, m)]
    cols = [(a, b, p + c0, q + c0) for a, b, p, q in _windows_in(c1 - c0, c0, w, core, m)]
    tiles = [(r, c) for r in rows for c in cols]
    dev = torch.device(device)
    run = _low_precision(net, precision)
    with torch.inference_mode():
        for i in range(0, len(tiles), batch):
            group = tiles[i:i + batch]  # every window of an axis has one length: the tiles stack
            xb = torch.stack([x[:, ra:rb, ca:cb] for (ra, rb, _, _), (ca, cb, _, _) in group]).to(dev)
            # channels-last: oneDNN's (and cuDNN's) native layout for convolutions (measured 1.2x in
            # fp32 and 1.6x in bf16 on a CPU)
            xb = xb.contiguous(memory_format=torch.channels_last)
            yb = run(xb).float().cpu()
            for k, ((ra, _, p, q), (ca, _, u, v)) in enumerate(group):
                out[:, p:q, u:v] = yb[k, :, p - ra:q - ra, u - ca:v - ca]
    return out[:, m:m + h0, m:m + w0]


def _windows_in(span: int, offset: int, n: int, core: int, margin: int):
    """Axis windows whose cores tile [offset, offset + span) of an axis of length n; the windows
    may reach outside the span (that is context) but not outside [0, n)."""
    out = []
    # as many cores as ``core`` needs, of one balanced size: a span of 1.1 cores is two tiles of
    # 0.55 cores, not a full one and one nine tenths margin
    core = -(-span // -(-span // core))
    length = min(n, core + 2 * margin)
    for p in range(0, span, core):
        q = min(span, p + core)
        # shifted back inside the axis at its ends; it still holds the margin on both sides
        a = min(max(offset + p - margin, 0), n - length)
        out.append((a, a + length, p, q))
    return out


_LOW: "weakref.WeakKeyDictionary[DSen2Net, tuple]" = weakref.WeakKeyDictionary()


def _low_precision(net: DSen2Net, precision: str):
    """``net``'s forward in ``precision``: fp32 as it is; bf16/fp16 with the weights cast once
    (autocast casts them at every call: measured 1.13x slower on this CPU) and the global
    residual (the interpolated input, reflectance x 10000) added in fp32, where a 16-bit sum would
    round it by up to 8 DN. The cast copy is kept while ``net`` lives and its weights are
    unchanged (their tensors' version counters): a BigEarthNet patch calls this thousands of times."""
    if precision == "fp32":
        return net
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    key = (dtype, tuple(t._version for t in net.parameters()))  # DSen2Net holds no buffers
    hit = _LOW.get(net)
    if hit is None or hit[0] != key:
        low = copy.deepcopy(net).to(dtype)
        hit = (key, lambda x: low(x, dtype))
        _LOW[net] = hit
    return hit[1]


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX; Linux's CPU flags). oneDNN
    emulates bf16 on other AVX-512 CPUs, slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(device: str, precision: str) -> str:
    """``auto``: bf16 on a GPU and on CPUs with native bf16, else fp32. bf16 was measured against fp32
    on the cross-validation's held-out scenes: pooled RMSE 92.9 vs 92.9 (2x), 105.6 vs 105.5 (6x); the
    guard's consistency step runs in fp32 and takes back the rounding the input can see."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" or cpu_has_native_bf16() else "fp32"
    return precision


class DSen2:
    """The ``dsen2`` upsampler: 20 m bands by the 2x network, 60 m bands by the 6x network."""

    name = "dsen2"
    needs_10m = True

    def __init__(self, weights: str | None = None, device: str = "cpu", precision: str = "auto",
                 core: int | None = None, batch: int | None = None, guard: bool = True, adapt: int | bool = 0,
                 model: str = "default"):
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--sr-device cuda, but torch sees no CUDA device")
        # adapt: fine-tuning steps per scene before inference (True: adapt.DEFAULT_STEPS; 0: none)
        self.adapt_steps = adapt_mod.DEFAULT_STEPS if adapt is True else int(adapt or 0)
        if self.adapt_steps < 0:
            raise ValueError(f"adapt must be a step count >= 0 (or True), not {adapt!r}")
        self.adaptation: dict | None = None  # the report of the scene this copy was adapted to
        # output values (bands x pixels, in the used regions) the guard's range bound moved; a
        # build's threads share one upsampler, hence the lock
        self.held_px, self._held_lock = 0, threading.Lock()
        # model: which shipped weights (weights_io.MODELS) when no weights are given
        self.nets, self.provenance = weights_io.load(weights, model or "default")
        self.device, self.precision = device, resolve_precision(device, precision)
        # CPU: one tile of about 200k pixels x 32 features at a time keeps the activations in
        # cache, and the fewer tiles, the less margin is computed twice (measured with F = 32 on a
        # 1,200 px tile: one tile of 400 + margins 3.64 s in bf16 and 6.86 s in fp32, four of 200
        # 3.98 and 9.29 s, one of 600 3.92 s); a GPU wants large batches
        gpu = torch.device(device).type == "cuda"
        feats = max(n.spec.features for n in self.nets.values())
        radius = max(n.spec.radius for n in self.nets.values())
        cpu_core = max(64, int(math.sqrt(200_000 * 32 / feats)) - 2 * radius) // 8 * 8
        self.core, self.batch = core or (512 if gpu else cpu_core), batch or (16 if gpu else 1)
        for n in self.nets.values():
            n.to(device, memory_format=torch.channels_last)
        self.guard = guard
        # how far the guard reaches into the networks' output, and into the inputs around it
        self.reach = max(guard_reach(2), guard_reach(6)) if guard else 0
        context = max(self.reach + radius + WEIGHT_RADIUS, guard_context(2), guard_context(6)) if guard else radius
        # plus the 6 px next to a cut where the 60 m bilinear input is clamped
        self.halo = math.ceil((context + 6) / 6)

    def describe(self) -> dict:
        """What the archive and manifest record about the method."""
        guard = ({"consistency": "wald-gauss", "detail_floor": DETAIL_FLOOR, "budget": {"2": budget(2), "6": budget(6)}}
                 if self.guard else None)
        out = {"method": self.name, "precision": self.precision, "guard": guard, **self.provenance}
        if self.adapt_steps:  # the recipe (per scene, from its own bands); each scene's weights are in its record
            out["adapt"] = {"steps": self.adapt_steps, "lr": adapt_mod.LR, "crop": adapt_mod.CROP,
                            "batch": adapt_mod.BATCH, "protocol": "wald-gauss"}
        return out

    def for_scene(self, pieces) -> "DSen2":
        """This upsampler for one scene: itself without adaptation; with it, a copy whose networks
        were fine-tuned on ``pieces`` (the scene's (b10, b20, b60), float32 reflectance x 10000)
        under Wald's protocol (``adapt.adapt``), its report in ``.adaptation``."""
        if not self.adapt_steps:
            return self
        nets, report = adapt_mod.adapt(self.nets, pieces, self.adapt_steps, device=self.device)
        scene = copy.copy(self)
        scene.nets, scene.adaptation = nets, report
        return scene

    def __call__(self, b10, b20, b60, region=None):
        up20 = upsample_stack(b20, 2)
        h, w = up20.shape[1:]
        used = region or (0, h, 0, w)

        def grown(s: int):
            """The used region widened by the ratio-s guard's reach: where that network must run."""
            if region is None:
                return None
            e = guard_reach(s) if self.guard else 0
            r0, r1, c0, c1 = used
            return (max(0, r0 - e), min(h, r1 + e), max(0, c0 - e), min(w, c1 + e))

        kw = dict(core=self.core, batch=self.batch, device=self.device, precision=self.precision)
        sr20 = run_tiled(self.nets[2], net_input(2, b10, b20, up20=up20), region=grown(2), **kw)
        x6 = net_input(6, b10, b20, b60, up20=up20)
        sr60 = run_tiled(self.nets[6], x6, region=grown(6), **kw)
        if self.guard:
            up60 = x6[-len(BANDS_60M):]
            if region is not None:  # outside the computed region the networks' output is zero: no detail there
                for sr, up, s in ((sr20, up20, 2), (sr60, up60, 6)):
                    r0, r1, c0, c1 = grown(s)
                    inside = sr[:, r0:r1, c0:c1].clone()
                    sr.copy_(up)
                    sr[:, r0:r1, c0:c1] = inside
            # the guard on the used region and the context it reads, cut on the 60 m grid
            r0, r1, c0, c1 = used
            ctx = max(guard_context(2), guard_context(6), WEIGHT_RADIUS)
            ga, gb = max(0, (r0 - ctx) // 6 * 6), min(h, -(-(r1 + ctx) // 6) * 6)
            gc, gd = max(0, (c0 - ctx) // 6 * 6), min(w, -(-(c1 + ctx) // 6) * 6)
            weight = detail_weight(torch.as_tensor(b10)[:, ga:gb, gc:gd])
            for sr, up, coarse, s in ((sr20, up20, b20, 2), (sr60, up60, b60, 6)):
                c = torch.as_tensor(coarse, dtype=torch.float32)[:, ga // s:gb // s, gc // s:gd // s]
                guarded = guard(sr[:, ga:gb, gc:gd], up[:, ga:gb, gc:gd], c, s, weight)
                held = clamp_to_neighbourhood(guarded, c, s)
                inside = (slice(None), slice(r0 - ga, r1 - ga), slice(c0 - gc, c1 - gc))  # the used region
                moved = int((held[inside] != guarded[inside]).sum())
                with self._held_lock:
                    self.held_px += moved
                sr[:, ga:gb, gc:gd] = held
        out = np.empty((len(BANDS_SR), *sr20.shape[1:]), np.float32)
        for cube, names in ((sr20, BANDS_20M), (sr60, BANDS_60M)):
            for k, name in enumerate(names):
                out[BANDS_SR.index(name)] = cube[k].numpy()
        check_output(out, b20, b60, self.provenance["files"])
        return out
