"""ResNet-50 (torchvision's v1.5, or the paper's v1) for multilabel Sentinel-2 patches.

The first convolution takes the bands of the input variant (12 for ``super``, 3 for ``rgb``);
for ``native`` a multi-resolution stem brings the 10, 20 and 60 m cubes to one 60x60 grid
with learned filters instead of interpolation. Dropout (0.5 by default) precedes the last
dense layer; the head has 43 (or 19) logits, trained with sigmoid + binary cross-entropy.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet

from bigearth.record import BANDS_SUPER, RGB

class BottleneckV1(resnet.Bottleneck):
    """The original ResNet bottleneck (He et al. 2016; Keras 2.2.4's ResNet50, which the paper
    used): a downsampling block strides in its first 1x1 convolution. torchvision's Bottleneck is
    "v1.5", striding in the 3x3 convolution; everything else (widths, BatchNorm, the shortcut's
    strided 1x1 projection) is the same."""

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None):
        super().__init__(inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer)
        width = self.conv1.out_channels
        self.conv1 = resnet.conv1x1(inplanes, width, stride)
        self.conv2 = resnet.conv3x3(width, width, 1, groups, dilation)


ARCHS = {"resnet18": (resnet.BasicBlock, (2, 2, 2, 2)), "resnet34": (resnet.BasicBlock, (3, 4, 6, 3)),
         "resnet50": (resnet.Bottleneck, (3, 4, 6, 3)), "resnet50_v1": (BottleneckV1, (3, 4, 6, 3)),
         "resnet101": (resnet.Bottleneck, (3, 4, 23, 3))}
IN_CHANS = {"super": len(BANDS_SUPER), "rgb": len(RGB)}


class MultiResStem(nn.Module):
    """The native cubes to the 64 channels at 60x60 that ResNet's own stem gives for a 120x120
    input: 10 m (4 bands) by a stride-2 convolution, 20 m (6 bands) at its own grid, 60 m
    (2 bands) by a stride-3 transposed convolution; concatenated (then ResNet's bn1, relu,
    maxpool and body follow unchanged)."""

    def __init__(self, out: int = 64):
        super().__init__()
        self.c10 = nn.Conv2d(4, out // 2, 7, stride=2, padding=3, bias=False)
        self.c20 = nn.Conv2d(6, out // 4 + out // 8, 5, stride=1, padding=2, bias=False)
        self.c60 = nn.ConvTranspose2d(2, out - out // 2 - out // 4 - out // 8, 3, stride=3, bias=False)

    def forward(self, x: dict) -> torch.Tensor:
        return torch.cat([self.c10(x["10m"]), self.c20(x["20m"]), self.c60(x["60m"])], dim=1)


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """``"1,1,1,1"`` (the ``--layers`` flag) -> blocks per stage; None keeps the architecture's."""
    return tuple(int(v) for v in text.split(",")) if text else None


def build_model(variant: str = "super", num_classes: int = 43, arch: str = "resnet50", dropout: float = 0.5,
                layers: tuple[int, ...] | None = None) -> resnet.ResNet:
    """torchvision's ResNet (no pretrained weights), adapted to the variant; ``layers``
    overrides the blocks per stage (a shallower net for CPU tests)."""
    block, default_layers = ARCHS[arch]
    model = resnet.ResNet(block, list(layers or default_layers), num_classes=num_classes)
    if variant == "native":
        model.conv1 = MultiResStem(model.conv1.out_channels)
    else:
        model.conv1 = nn.Conv2d(IN_CHANS[variant], model.conv1.out_channels, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
    return model


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """L2 on convolution weights only (the paper's recipe): BatchNorm, biases and the dense
    layer go without."""
    conv = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
    decay = [p for p in model.parameters() if id(p) in conv]
    rest = [p for p in model.parameters() if id(p) not in conv]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
