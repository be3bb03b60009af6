"""DSen2 (Lanaras et al. 2018): guided super-resolution of Sentinel-2's 20 m and 60 m bands.

Reimplemented from the paper. Two networks of one shape:

* 2x (20 m bands): input the 4 bands at 10 m and the 6 bands at 20 m upsampled to 10 m;
  output the 6 bands at 10 m.
* 6x (60 m bands): input the 4 + 6 (upsampled) + 2 bands at 60 m (upsampled); output the 2 bands.

3x3 conv + ReLU to F features, N residual blocks (conv, ReLU, conv, times 0.1, plus the block
input), a 3x3 conv to the output bands, plus the upsampled low-resolution bands (global
residual): the network learns only the detail bilinear interpolation misses. Reflectances
(x 10000) are divided by 2000 going in and multiplied back coming out. Convolutions pad with
zeros ('same'), as the published Keras model does, so its weights load unchanged.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from bigearth.record import BANDS_10M, BANDS_20M, BANDS_60M

SCALE = 2000.0  # reflectance x 10000 is divided by this going in


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """The shape of one network: ratio 2 (20 m bands) or 6 (60 m bands), N blocks, F features."""

    ratio: int
    blocks: int = 6
    features: int = 128

    def __post_init__(self):
        if self.ratio not in (2, 6):
            raise ValueError(f"ratio must be 2 (20 m bands) or 6 (60 m bands), not {self.ratio}")
        if self.blocks < 0 or self.features < 1:
            raise ValueError(f"blocks must be >= 0 and features >= 1 (got {self.blocks}, {self.features})")

    @property
    def in_bands(self) -> int:
        return len(BANDS_10M) + len(BANDS_20M) + (len(BANDS_60M) if self.ratio == 6 else 0)

    @property
    def out_bands(self) -> int:
        return len(BANDS_20M) if self.ratio == 2 else len(BANDS_60M)

    @property
    def radius(self) -> int:
        """Receptive-field radius in 10 m pixels: one per 3x3 convolution."""
        return 2 * self.blocks + 2


class ResBlock(nn.Module):
    def __init__(self, features: int, scale: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.scale = scale

    def forward(self, x):
        return x + self.scale * self.conv2(torch.relu(self.conv1(x)))


class DSen2Net(nn.Module):
    """One DSen2 network. ``forward(x)`` takes the stacked input bands at 10 m, (B, in_bands, H, W),
    reflectance x 10000, with the upsampled bands to be refined last; returns (B, out_bands, H, W)."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.spec = spec
        self.head = nn.Conv2d(spec.in_bands, spec.features, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(spec.features) for _ in range(spec.blocks)])
        self.tail = nn.Conv2d(spec.features, spec.out_bands, 3, padding=1)
        # training starts from the bilinear result (the global residual alone) rather than from
        # random detail: measured to reach a lower validation L1 in a CPU-hour budget
        zero_tail(self)

    def convs(self) -> list[nn.Conv2d]:
        """The convolutions in the order the published model creates them."""
        out = [self.head]
        for blk in self.body:
            out += [blk.conv1, blk.conv2]
        return out + [self.tail]

    def forward(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``dtype``: the convolutions' arithmetic when the weights were cast to it (bf16, fp16);
        the global residual is added in x's own precision (fp32) whatever it is."""
        h = x / SCALE
        y = self.tail(self.body(torch.relu(self.head(h if dtype is None else h.to(dtype)))))
        # (y + x / SCALE) * SCALE, added unscaled so a zero detail returns the input bit for bit
        return y.to(x.dtype) * SCALE + x[:, -self.spec.out_bands:]


def zero_tail(net: DSen2Net) -> DSen2Net:
    """Zero the last convolution: the network then returns its upsampled input exactly."""
    nn.init.zeros_(net.tail.weight)
    nn.init.zeros_(net.tail.bias)
    return net
