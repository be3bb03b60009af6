"""reference_train/model.py: the architectures and the parameter groups of the optimizer."""
from __future__ import annotations

import torch
from torch import nn

from reference_train.model import build_model, param_groups


def test_weight_decay_reaches_convolution_weights_only():
    model = build_model("super", 43, "resnet18", 0.5, (1, 1, 1, 1))
    groups = param_groups(model, 1e-4)
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in convs} and groups[0]["weight_decay"] == 1e-4
    assert groups[1]["weight_decay"] == 0 and len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no loss gradient: only the decay moves anything
    opt.step()
    conv_names = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    for n, p in model.named_parameters():
        moved = not torch.equal(p, before[n])
        assert moved == (n.rsplit(".", 1)[0] in conv_names and n.endswith("weight")), n
        if moved:
            torch.testing.assert_close(p, before[n] * (1 - 0.1 * 1e-4))
