"""The architectures of the paper as plain ``torch.nn.Module``s, all traceable by ``torch.fx``.

:func:`build_model` is the single entry point. Every model takes the number of classes, the
input channels and side, a dropout rate (in the classifier, where the authors' code varies it)
and a width multiplier ``width`` that scales every hidden layer (convolution channels and
hidden fully connected units; the input and the classes are fixed). In every model the
classifier, an ``nn.Linear``, is the last registered module, so ``list(model.modules())[-1]``
is the output layer.

``lenet``
    LeNet-5: conv 5x5 (6) - max pool - conv 5x5 (16) - max pool - fc 120 - fc 84 - fc classes,
    ReLU activations; the first convolution pads by 2 (as LeNet-5 on padded 28x28 MNIST).
``alexnet``
    the CIFAR variant of AlexNet: five 3x3 convolutions (64, 192, 384, 256, 256 channels) with
    max pooling after the 1st, 2nd and 5th, then three fully connected layers (``hidden``
    units, default 1024, twice, then the classes) with dropout before the first two.
``vgg``
    VGG-11/13/16/19 (configurations A, B, D, E of Simonyan & Zisserman) with batch
    normalisation, as in the common CIFAR code: ``512 - 512 - classes`` fully connected
    classifier with dropout before the first two layers. Max pools that would shrink the map
    below 1x1 (small inputs) are left out.
``resnet_cifar``
    the CIFAR ResNets of He et al. (2016), depth ``6n + 2`` (ResNet-20, 32, 44, ...): a 3x3
    stem of 16 channels, three stages of ``n`` basic blocks with 16, 32, 64 channels (stride
    1, 2, 2), global average pooling, dropout, a linear classifier. Shortcuts that change shape
    are 1x1 convolutions with batch normalisation (option B).
``resnet34``, ``resnet50``
    ``torchvision.models.resnet34/resnet50`` (``weights=None``), with the input channels, the
    classes, a dropout before the classifier and ``width`` scaling the stem and every stage.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


def he_init(model: nn.Module) -> nn.Module:
    """He et al. (2015) normal initialisation (fan-in, ReLU gain) of every conv and linear weight,
    zero biases. Without it the plain (non-residual, no batch norm) nets barely move from chance
    in the few hundred steps of the digits populations."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def scaled(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 1."""
    return max(1, int(round(channels * width)))


# --------------------------------------------------------------------------- LeNet-5
class LeNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 dropout: float = 0.0, width: float = 1.0):
        super().__init__()
        c1, c2 = scaled(6, width), scaled(16, width)
        f1, f2 = scaled(120, width), scaled(84, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        side = ((image_size // 2) - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet needs images of at least 12x12 pixels, got {image_size}")
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c2 * side * side, f1), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(f1, f2), nn.ReLU(inplace=True),
            nn.Linear(f2, num_classes),
        )
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------- AlexNet (CIFAR)
class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 dropout: float = 0.0, width: float = 1.0, hidden: int = 1024):
        super().__init__()
        c = [scaled(k, width) for k in (64, 192, 384, 256, 256)]
        h = scaled(hidden, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c[0], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c[0], c[1], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        side = image_size // 8
        if side < 1:
            raise ValueError(f"AlexNet needs images of at least 8x8 pixels, got {image_size}")
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c[4] * side * side, h), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(h, h), nn.ReLU(inplace=True),
            nn.Linear(h, num_classes),
        )
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------- VGG (CIFAR, BN)
VGG_CFG: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 dropout: float = 0.0, width: float = 1.0, depth: int = 11):
        super().__init__()
        if depth not in VGG_CFG:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_CFG)}, got {depth}")
        layers: list[nn.Module] = []
        ch, side = in_channels, image_size
        for item in VGG_CFG[depth]:
            if item == "M":
                if side >= 2:
                    layers.append(nn.MaxPool2d(2))
                    side //= 2
                continue
            out = scaled(int(item), width)
            layers += [nn.Conv2d(ch, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        self.features = nn.Sequential(*layers)
        h = scaled(512, width)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(ch * side * side, h), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(h, h), nn.ReLU(inplace=True),
            nn.Linear(h, num_classes),
        )
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------- ResNet (CIFAR)
class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:  # option B: projection shortcut
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 dropout: float = 0.0, width: float = 1.0, depth: int = 20):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, ...), got {depth}")
        n = (depth - 2) // 6
        planes = [scaled(16, width), scaled(32, width), scaled(64, width)]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        in_planes = planes[0]
        stages = []
        for i, p in enumerate(planes):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, p, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = p
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(planes[2], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(self.dropout(out))


# --------------------------------------------------------------------------- torchvision ResNets
def _torchvision_resnet(blocks: str, num_classes: int, in_channels: int, image_size: int,
                        dropout: float = 0.0, width: float = 1.0) -> nn.Module:
    """torchvision's ResNet-34/50 with ``width`` scaling the stem and the planes of every stage.

    torchvision hard-codes 64 stem channels and planes 64-128-256-512; the subclass below
    scales them by overriding ``_make_layer`` (the constructor's only way of sizing stages)
    and re-creating the stem and the classifier, which keep their registration order.
    """
    from torchvision.models.resnet import BasicBlock as TvBasic, Bottleneck, ResNet

    block, layers = {"resnet34": (TvBasic, [3, 4, 6, 3]), "resnet50": (Bottleneck, [3, 4, 6, 3])}[blocks]

    class WideResNet(ResNet):
        def _make_layer(self, block, planes, n, stride=1, dilate=False):  # type: ignore[override]
            if planes == 64:  # first stage: the stem's output becomes scaled too
                self.inplanes = scaled(64, width)
            return super()._make_layer(block, scaled(planes, width), n, stride, dilate)

    model = WideResNet(block, layers, num_classes=num_classes)
    stem = scaled(64, width)
    model.conv1 = nn.Conv2d(in_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.bn1 = nn.BatchNorm2d(stem)
    features = scaled(512, width) * block.expansion
    model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))
    return model


# --------------------------------------------------------------------------- registry
MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet": LeNet,
    "alexnet": AlexNet,
    "vgg": VGG,
    "resnet_cifar": ResNetCifar,
    "resnet34": lambda **kw: _torchvision_resnet("resnet34", **kw),
    "resnet50": lambda **kw: _torchvision_resnet("resnet50", **kw),
}


def build_model(model: str, num_classes: int, in_channels: int, image_size: int,
                dropout: float = 0.0, **model_kwargs: Any) -> nn.Module:
    """A freshly initialised network (seed ``torch.manual_seed`` beforehand for a fixed init).

    Parameters
    ----------
    model
        one of :data:`MODELS`: ``lenet``, ``alexnet``, ``vgg``, ``resnet_cifar``, ``resnet34``,
        ``resnet50``.
    num_classes, in_channels, image_size
        output classes, input channels, side of the square input images.
    dropout
        dropout probability in the classifier.
    **model_kwargs
        ``width`` (multiplier of every hidden layer, all models), ``depth`` (``resnet_cifar``:
        6n+2; ``vgg``: 11, 13, 16, 19), ``hidden`` (``alexnet``: fully connected units at width 1).

    Examples
    --------
    >>> net = build_model("resnet_cifar", 10, 1, 16, depth=20, width=0.5)
    >>> type(list(net.modules())[-1]).__name__
    'Linear'
    """
    if model not in MODELS:
        raise KeyError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    return MODELS[model](num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                         dropout=dropout, **model_kwargs)


def classifier(model: nn.Module) -> nn.Linear:
    """The output layer (the last registered module, an ``nn.Linear``)."""
    last = list(model.modules())[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError(f"the last registered module of {type(model).__name__} is {type(last).__name__}, "
                        "not nn.Linear")
    return last
