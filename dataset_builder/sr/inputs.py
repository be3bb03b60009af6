"""The networks' input stacks: the 10 m bands with the coarser bands upsampled onto their grid
(the builder's bilinear), as training, adaptation and inference all build them."""
from __future__ import annotations

import numpy as np
import torch

from ..interpolate import bilinear


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
