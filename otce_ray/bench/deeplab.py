"""DeepLabV3-ResNet50 in plain torch: the GPU check's extraction model, for a card that has torch but no torchvision.

Layer for layer torchvision's ``deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)``: ResNet-50
with layer3 and layer4 dilated instead of strided (output stride 8), an ASPP head (rates 12, 24, 36, image pooling),
a 3x3 conv-bn-relu and a 1x1 classifier, upsampled to the input size. The module names and parameter shapes are
torchvision's (a test loads torchvision's state dict into it and compares outputs), so the arithmetic and the cost
are the same. The check carries this instead of torchvision because a torchvision wheel is built against one torch
release and CUDA build, which the card's torch need not be.

As with the ``torchvision`` model format, the features are ``classifier.3``'s output (256 channels at 1/8 of the
input), the logits the output's ``out``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_LAYER = "classifier.3"
EXPANSION = 4  # a bottleneck's output channels per ``planes``
ATROUS_RATES = (12, 24, 36)
HEAD_CHANNELS = 256


def _bn_relu(conv: nn.Conv2d) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU()]


class Bottleneck(nn.Module):
    """ResNet's bottleneck block: 1x1 down, 3x3 (strided or dilated), 1x1 up, plus the (projected) input."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class DilatedResNet50(nn.Module):
    """ResNet-50 up to layer4, layers 3 and 4 dilated (torchvision's ``replace_stride_with_dilation=[False, True,
    True]``), initialised as torchvision initialises it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes, self.dilation = 64, 1
        self.layer1 = self._layer(64, 3)
        self.layer2 = self._layer(128, 4, stride=2)
        self.layer3 = self._layer(256, 6, stride=2, dilate=True)
        self.layer4 = self._layer(512, 3, stride=2, dilate=True)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous = self.dilation
        if dilate:
            self.dilation, stride = self.dilation * stride, 1
        downsample = None
        if stride != 1 or self.inplanes != planes * EXPANSION:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * EXPANSION, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * EXPANSION))
        layers = [Bottleneck(self.inplanes, planes, stride, previous, downsample)]
        self.inplanes = planes * EXPANSION
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ImagePooling(nn.Sequential):
    """ASPP's image-level branch: global average, 1x1 conv-bn-relu, broadcast back to the map's size."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *_bn_relu(nn.Conv2d(channels, out_channels, 1, bias=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, one 3x3 branch per rate, image pooling; concatenated and
    projected (with dropout, idle in eval mode)."""

    def __init__(self, channels: int, rates: Sequence[int], out_channels: int = HEAD_CHANNELS) -> None:
        super().__init__()
        branches = [nn.Sequential(*_bn_relu(nn.Conv2d(channels, out_channels, 1, bias=False)))]
        branches += [nn.Sequential(*_bn_relu(nn.Conv2d(channels, out_channels, 3, padding=rate, dilation=rate,
                                                       bias=False))) for rate in rates]
        self.convs = nn.ModuleList([*branches, ImagePooling(channels, out_channels)])
        self.project = nn.Sequential(*_bn_relu(nn.Conv2d(len(self.convs) * out_channels, out_channels, 1,
                                                         bias=False)), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabV3(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = DilatedResNet50()
        self.classifier = nn.Sequential(
            ASPP(2048, ATROUS_RATES),
            *_bn_relu(nn.Conv2d(HEAD_CHANNELS, HEAD_CHANNELS, 3, padding=1, bias=False)),
            nn.Conv2d(HEAD_CHANNELS, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.classifier(self.backbone(x))
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def deeplabv3_resnet50(num_classes: int = 21) -> DeepLabV3:
    """The network, randomly initialised (the ``python`` model format's entrypoint)."""
    return DeepLabV3(num_classes)


def model_spec(name: str = "deeplabv3-resnet50", num_classes: int = 19) -> dict:
    """The run config's model entry for it: a ``python`` entrypoint, features at ``classifier.3``."""
    return {"name": name, "format": "python", "entrypoint": f"{__name__}:deeplabv3_resnet50",
            "kwargs": {"num_classes": num_classes}, "feature_layer": FEATURE_LAYER}
