"""Consistency with the low-resolution input: the "do no harm" step of super-resolution.

Wald's protocol says how a coarse band arises from its 10 m version: a Gaussian blur of
sigma = 1/s (in pixels of the fine grid) and the s x s block mean (``wald.degrade``). Whatever a
network adds, the truth it aims at satisfies ``D(truth) = input``. Moving an estimate onto that
affine set along ``D^T`` (an orthogonal projection) can only bring it closer to *any* image in
the set, the truth included: the step removes every error the input can see and keeps only
detail the input cannot contradict (measured: DSen2's RMSE fell on all 23 real scenes tried).

The projection is computed by a fixed number of preconditioned Richardson steps,
``y <- y + omega * s^2 * D^T (x - D y)``, each a pair of fixed-kernel strided convolutions over
explicitly reflected edges. Every output pixel therefore depends only on inputs within
:func:`radius` and is computed by the same arithmetic wherever a window starts: strip-by-strip runs equal whole-tile runs bit for bit (the builder's
rule), which an iterative solver with data-dependent steps (CG) or an FFT would not give.
Edges are reflected as ``scipy.ndimage``'s ``reflect`` mode does, so ``degrade`` here equals
``wald.degrade`` (tested).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# The step sizes per ratio. The eigenvalues of s^2 D D^T lie in [0.384, 1] for s = 2 and are 1
# for s = 6 (the sigma = 1/6 blur is numerically a delta), so one step of 1 is exact at 6x. At
# 2x the first step of 1 removes a constant offset exactly (so a constant image stays constant)
# and the second, 2.04, minimises the residual's worst-case factor max |(1 - l)(1 - 2.04 l)| over
# the spectrum: 0.134 (``contraction``). Measured on 23 real scenes: two steps reach the exact
# projection's RMSE to 0.1 DN, as three do; each step widens the reach the builder pays for in
# network work around every kept patch by 6 px.
SCHEDULE = {2: (1.0, 2.04), 6: (1.0,)}


def _taps(s: int) -> torch.Tensor:
    """scipy's Gaussian kernel for sigma = 1/s, truncate 4.0: radius int(4 sigma + 0.5)."""
    sig = 1.0 / s
    r = int(4.0 * sig + 0.5)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sig) ** 2)
    return (k / k.sum()).to(torch.float32)


def reflect_index(n: int, r: int) -> torch.Tensor:
    """Indices of an axis of length n padded by r on both sides, scipy's 'reflect' (d c b a | a b c d,
    the edge pixel repeated); an r wider than the axis clamps at its far end."""
    idx = torch.arange(-r, n + r)
    idx = torch.where(idx < 0, -idx - 1, idx)
    return torch.where(idx >= n, 2 * n - idx - 1, idx).clamp(0, n - 1)


def _fused(s: int, dtype) -> tuple[torch.Tensor, int]:
    """The blur and the s-block mean of one axis as one filter of 2r + s taps applied at stride s
    (out[i] = sum_u g[u] * padded[s i + u]), and the blur's radius r."""
    k = _taps(s).to(torch.float64)
    r = (len(k) - 1) // 2
    g = torch.zeros(2 * r + s, dtype=torch.float64)
    for q in range(s):
        g[q:q + 2 * r + 1] += k / s
    return g.to(dtype), r


def degrade(y: torch.Tensor, s: int) -> torch.Tensor:
    """(..., H, W) -> (..., H/s, W/s): Gaussian blur (sigma 1/s, reflected edges), s x s block mean.

    Computed as two strided depthwise convolutions of the fused filter (``_fused``) over the
    reflected image: the protocol's blur and block mean in 1.6x less time than blurring every
    pixel first, and, with no implicit padding, the same arithmetic for a pixel wherever a
    window starts (strips equal whole tiles bit for bit; tested)."""
    g, r = _fused(s, y.dtype)
    *lead, h, w = y.shape
    # rows first, then the columns of the s-times smaller result: each padding copies what it must
    x = F.conv2d(y.reshape(-1, 1, h, w).index_select(2, reflect_index(h, r)), g.view(1, 1, -1, 1), stride=(s, 1))
    x = F.conv2d(x.index_select(3, reflect_index(w, r)), g.view(1, 1, 1, -1), stride=(1, s))
    return x.reshape(*lead, h // s, w // s)


def degrade_adjoint(v: torch.Tensor, s: int) -> torch.Tensor:
    """D^T: (..., h, w) -> (..., h*s, w*s); <D y, v> = <y, D^T v>: the transposed strided
    convolutions, then the reflected padding folded back onto the pixels it copied."""
    g, r = _fused(s, v.dtype)
    *lead, h, w = v.shape
    hs, ws = h * s, w * s
    x = v.reshape(-1, 1, h, w)
    x = F.conv_transpose2d(F.conv_transpose2d(x, g.view(1, 1, 1, -1), stride=(1, s)), g.view(1, 1, -1, 1), stride=(s, 1))
    n = x.shape[0]
    x = torch.zeros((n, 1, hs + 2 * r, ws), dtype=x.dtype).index_add_(3, reflect_index(ws, r), x)
    x = torch.zeros((n, 1, hs, ws), dtype=x.dtype).index_add_(2, reflect_index(hs, r), x)
    return x.reshape(*lead, hs, ws)


def project(y: torch.Tensor, x: torch.Tensor, s: int, schedule=None) -> torch.Tensor:
    """``y`` (..., H, W) moved onto the set {D y = x}, ``x`` (..., H/s, W/s), by Richardson steps
    along s^2 D^T with the step sizes ``schedule`` (default :data:`SCHEDULE`)."""
    y = y.to(torch.float32)
    x = x.to(torch.float32)
    for omega in SCHEDULE[s] if schedule is None else schedule:
        y = y + (omega * s * s) * degrade_adjoint(x - degrade(y, s), s)
    return y


def radius(s: int, schedule=None) -> int:
    """How far (10 m pixels) an output pixel of :func:`project` reaches into its input."""
    steps = len(SCHEDULE[s] if schedule is None else schedule)
    r = (len(_taps(s)) - 1) // 2
    # one step: blur (r), block mean (s - 1 within the block), replicate back, blur (r)
    return steps * (2 * r + 2 * (s - 1))


def residual(y: torch.Tensor, x: torch.Tensor, s: int) -> float:
    """RMS of x - D(y): how far an output is from giving its input back (reflectance x 10000)."""
    return float((x.to(torch.float32) - degrade(y.to(torch.float32), s)).pow(2).mean().sqrt())


def spectrum(s: int, n: int = 24) -> torch.Tensor:
    """Eigenvalues of s^2 D D^T on an n x n coarse grid (reflected edges), computed densely."""
    m = n * n
    eye = torch.eye(m, dtype=torch.float64).reshape(m, n, n)
    return torch.linalg.eigvalsh((s * s) * degrade(degrade_adjoint(eye, s), s).reshape(m, m))


def contraction(s: int, schedule=None, n: int = 24) -> float:
    """The largest factor by which the whole schedule can leave the residual x - D y."""
    lam = spectrum(s, n)
    p = torch.ones_like(lam)
    for omega in SCHEDULE[s] if schedule is None else schedule:
        p = p * (1 - omega * lam)
    return float(p.abs().max())
