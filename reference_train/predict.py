"""Running a model over a split: batches to the device, sigmoid probabilities and targets."""
from __future__ import annotations

import numpy as np
import torch


def to_device(x, device, channels_last: bool):
    if isinstance(x, dict):
        return {k: to_device(v, device, channels_last) for k, v in x.items()}
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@torch.no_grad()
def predict(model, loader, normalizer, device, channels_last: bool = False, with_names: bool = False):
    """Sigmoid probabilities and targets of a whole split: ``(probs, targets)``, and the patch
    names with ``with_names`` (the loader then yields ``(x, y, meta)``)."""
    model.eval()
    probs, targets, names = [], [], []
    for batch in loader:
        x, y = batch[0], batch[1]
        x = normalizer(to_device(x, device, channels_last))
        probs.append(torch.sigmoid(model(x).float()).cpu().numpy())
        targets.append(y.numpy())
        if with_names:
            names += [m["name"] for m in batch[2]]
    p = np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)
    t = np.concatenate(targets) if targets else np.zeros((0, 0), np.float32)
    return (p, t, names) if with_names else (p, t)
