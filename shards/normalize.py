"""Per-band normalisation with the build's statistics (fitted on the training split), and the
last stages of the pipeline: batches and tensors."""
from __future__ import annotations

import numpy as np
import torch

from bigearth.record import RGB_INDEX


def band_stats(index: dict, variant: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-band (mean, std) of the variant's cubes, from the build manifest via the index."""
    st = index["band_stats"]
    pick = lambda k, idx=slice(None): (np.asarray(st[k]["mean"], np.float32)[idx],  # noqa: E731
                                       np.maximum(np.asarray(st[k]["std"], np.float32)[idx], 1e-6))
    if variant == "super":
        return {"x": pick("data_super")}
    if variant == "rgb":
        return {"x": pick("data_super", RGB_INDEX)}
    return {"10m": pick("data_10m"), "20m": pick("data_20m"), "60m": pick("data_60m")}


def _norm(a: np.ndarray, stats) -> np.ndarray:
    mean, std = stats
    shape = (-1, 1, 1)
    return (a.astype(np.float32) - mean.reshape(shape)) * (1 / std).reshape(shape)


def to_tensors(item: dict, stats: dict | None) -> tuple:
    """``{"x", "y"[, "meta"]}`` (one sample or a batch) -> ``(x, y[, meta])`` torch tensors.

    x: float32 normalised when ``stats`` is given, else the stored uint16; y: float32 multi-hot.
    """
    x = item["x"]
    own = lambda a: a if a.flags.writeable and a.flags.c_contiguous else np.array(a)  # noqa: E731 (not a view of the tar bytes)
    if isinstance(x, dict):
        x = {k: torch.from_numpy(_norm(v, stats[k]) if stats else own(v)) for k, v in x.items()}
    else:
        x = torch.from_numpy(_norm(x, stats["x"]) if stats else own(x))
    y = torch.from_numpy(np.asarray(item["y"], np.float32))
    return (x, y, item["meta"]) if "meta" in item else (x, y)


def collate(samples: list[dict]) -> dict:
    x0 = samples[0]["x"]
    if isinstance(x0, dict):
        x = {k: np.stack([s["x"][k] for s in samples]) for k in x0}
    else:
        x = np.stack([s["x"] for s in samples])
    out = {"x": x, "y": np.stack([s["y"] for s in samples])}
    if "meta" in samples[0]:
        out["meta"] = [s["meta"] for s in samples]
    return out


class Normalizer(torch.nn.Module):
    """Per-band normalisation as a module, for uint16 batches moved to the GPU as they are
    (half the bytes of float32 over PCIe)."""

    def __init__(self, index: dict, variant: str = "super"):
        super().__init__()
        for k, (mean, std) in band_stats(index, variant).items():
            self.register_buffer(f"mean_{k}", torch.from_numpy(mean).view(-1, 1, 1))
            self.register_buffer(f"inv_std_{k}", torch.from_numpy(1 / std).view(-1, 1, 1))

    def forward(self, x):
        if isinstance(x, dict):
            return {k: (v.float() - getattr(self, f"mean_{k}")) * getattr(self, f"inv_std_{k}") for k, v in x.items()}
        return (x.float() - self.mean_x) * self.inv_std_x
