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
def predict(model, loader, normalizer, device, channels_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid probabilities and targets of a whole split."""
    model.eval()
    probs, targets = [], []
    for x, y in loader:
        x = normalizer(to_device(x, device, channels_last))
        probs.append(torch.sigmoid(model(x).float()).cpu().numpy())
        targets.append(y.numpy())
    if not probs:
        return np.zeros((0, 0)), np.zeros((0, 0))
    return np.concatenate(probs), np.concatenate(targets)
