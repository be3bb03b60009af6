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


def test_resnet50_v1_strides_in_the_first_1x1_and_v15_in_the_3x3():
    """Keras 2.2.4's ResNet-50 (the paper's) is v1; torchvision's is v1.5. Same weights count,
    the stride of each downsampling block in a different convolution."""
    v1 = build_model("super", 43, "resnet50_v1", 0.5)
    v15 = build_model("super", 43, "resnet50", 0.5)
    assert sum(p.numel() for p in v1.parameters()) == sum(p.numel() for p in v15.parameters())
    for name in ("layer2", "layer3", "layer4"):
        b1, b15 = getattr(v1, name)[0], getattr(v15, name)[0]
        assert (b1.conv1.stride, b1.conv2.stride) == ((2, 2), (1, 1)), name
        assert (b15.conv1.stride, b15.conv2.stride) == ((1, 1), (2, 2)), name
        assert b1.conv1.kernel_size == (1, 1) and b1.conv2.kernel_size == (3, 3)
        assert b1.downsample[0].stride == (2, 2)  # the shortcut projects with the same stride
    assert v1.layer1[0].conv1.stride == (1, 1)  # the first stage does not downsample (max-pool did)
    with torch.no_grad():
        v1.eval()
        out = v1(torch.zeros(2, 12, 120, 120))
    assert out.shape == (2, 43)
    # a v1 block equals its own computation with the stride moved: the 1x1 with stride 2 sees every
    # other pixel, so it equals the stride-1 1x1 on the subsampled input
    b = v1.layer2[0]
    x = torch.randn(1, b.conv1.in_channels, 16, 16)
    with torch.no_grad():
        strided = b.conv1(x)
        sub = torch.nn.functional.conv2d(x[:, :, ::2, ::2], b.conv1.weight)
    torch.testing.assert_close(strided, sub)
