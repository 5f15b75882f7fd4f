"""The authors' architectures as plain ``torch.nn.Module``s, all traceable by ``torch.fx``.

:func:`build_model` is the single entry point. Every model takes the number of classes, the
input channels and side, a dropout rate (where the authors' code applies it) and a width
multiplier ``width`` that scales every hidden layer (convolution channels and hidden fully
connected units; the input and the classes are fixed): ``width`` and the input size are how the
``default`` profile shrinks them for 16x16 digits. In every model the classifier, an
``nn.Linear``, is the last registered module, so ``list(model.modules())[-1]`` is the output
layer. The definitions follow the authors' public code (see ``docs/profiles.md``, "Fidelity"):

``lenet`` (their ``Dropout_Net``)
    conv 5x5 (6, no padding) - ReLU - max pool 2 - conv 5x5 (16) - ReLU - max pool 2 - flatten -
    fc 120 - ReLU - dropout - fc 84 - ReLU - dropout - fc classes. PyTorch's default
    initialisation. 239 rolled nodes on 3x32x32 inputs.
``alexnet`` (their ``Net10``)
    conv 7x7/2 pad 2 (96) - ReLU - max pool 3/2 - conv 5x5 pad 2 (256) - ReLU - max pool 3/2 -
    conv 3x3 (384) - ReLU - conv 3x3 (384) - ReLU - conv 3x3 (256) - ReLU - flatten - dropout -
    fc 1024 - ReLU - dropout - fc 512 - ReLU - fc classes. Convolutions: Kaiming normal (fan_out,
    ReLU); linear layers N(0, 0.01); biases 0. 2925 rolled nodes on 3x32x32.
``vgg`` (their ``Net32``)
    seven 3x3 convolutions with ReLU, no batch norm: 64 - pool - 128 - 128 - pool - 256 - 256 -
    pool - 256 - 256 - pool, flatten, fc 128 - ReLU - dropout - fc 128 - ReLU - dropout - fc
    classes. PyTorch's default initialisation. 1613 rolled nodes on 3x32x32.
``resnet_cifar`` (after akamaster's CIFAR ResNets, as the authors)
    depth ``6n + 2``: 3x3 conv (16, no bias) - BN - ReLU, three stages of ``n`` basic blocks
    (conv-BN-ReLU-conv-BN, 16/32/64 channels, stride 1/2/2), option A shortcuts
    (:class:`PadShortcut`: parameter-free, subsample by 2 and zero-pad the channels so that the
    identity channels land in the middle of the wider range), global average pooling, dropout,
    fc classes. Kaiming normal initialisation of conv and linear weights. ResNet-32: 1149
    rolled nodes.
``resnet34``, ``resnet50``
    ``torchvision.models.resnet34/resnet50`` (``weights=None``), with the input channels, the
    classes, a dropout before the classifier and ``width`` scaling the stem and every stage (the
    authors' ``resnet_Img.py`` is torchvision's ResNet with dropout).

``init="he"`` (``lenet``, ``alexnet``, ``vgg``) replaces the authors' initialisation by He et al.'s
(normal, fan-in, ReLU gain; zero biases): a named variant, part of a run's specification. The
``default`` profile uses it for AlexNet and VGG because with the authors' initialisation those two
stay at chance level for all 15 epochs on the 1,437 digits training images (180 SGD steps) at every
learning rate tried, where the authors had 390 steps per epoch on CIFAR-10; LeNet and the ResNets
keep the authors' initialisation.

The first release of this artifact used other definitions (a padded LeNet, VGG-11 with batch
norm, option B ResNets, He initialisation everywhere); they are gone, not kept under other names,
because nothing in the paper or the authors' code uses them.

Any other name is an imported run's model (:func:`build_imported`): a model of the public zoos
(:mod:`paperlib.train.zoo`), a torchvision classification model, or ``package.module:function``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .zoo import ZOO_MODELS


def scaled(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 1."""
    return max(1, int(round(channels * width)))


def _conv_out(side: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (side + 2 * padding - kernel) // stride + 1


INITS = ("authors", "he")


def he_init(model: nn.Module) -> nn.Module:
    """He et al. (2015) normal initialisation (fan-in, ReLU gain) of every conv and linear weight,
    zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _apply_init(model: nn.Module, init: str) -> None:
    if init not in INITS:
        raise ValueError(f"{type(model).__name__}: unknown init {init!r}; choose one of {INITS}")
    if init == "he":
        he_init(model)


def _check_side(name: str, side: int, image_size: int) -> None:
    if side < 1:
        raise ValueError(f"{name}: input images of {image_size}x{image_size} pixels shrink to nothing "
                         "before the classifier; use larger images")


# --------------------------------------------------------------------------- LeNet (Dropout_Net)
class LeNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 dropout: float = 0.0, width: float = 1.0, init: str = "authors"):
        super().__init__()
        c1, c2 = scaled(6, width), scaled(16, width)
        f1, f2 = scaled(120, width), scaled(84, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        side = _conv_out(_conv_out(image_size, 5) // 2, 5) // 2
        _check_side("LeNet", side, image_size)
        self.classifier = nn.Sequential(
            nn.Linear(c2 * side * side, f1), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(f1, f2), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(f2, num_classes),
        )
        _apply_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------- AlexNet (Net10)
class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 dropout: float = 0.0, width: float = 1.0, init: str = "authors"):
        super().__init__()
        c = [scaled(k, width) for k in (96, 256, 384, 384, 256)]
        h1, h2 = scaled(1024, width), scaled(512, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c[0], 7, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=True),
        )
        side = _conv_out(_conv_out(_conv_out(image_size, 7, 2, 2), 3, 2), 3, 2)
        _check_side("AlexNet", side, image_size)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c[4] * side * side, h1), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(h1, h2), nn.ReLU(inplace=True),
            nn.Linear(h2, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        _apply_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------- VGG (Net32)
VGG_CFG: list[int | str] = [64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M"]


class VGG(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 dropout: float = 0.0, width: float = 1.0, init: str = "authors"):
        super().__init__()
        layers: list[nn.Module] = []
        ch, side = in_channels, image_size
        for item in VGG_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                side //= 2
                continue
            out = scaled(int(item), width)
            layers += [nn.Conv2d(ch, out, 3, padding=1), nn.ReLU(inplace=True)]
            ch = out
        _check_side("VGG", side, image_size)
        self.features = nn.Sequential(*layers)
        h = scaled(128, width)
        self.classifier = nn.Sequential(
            nn.Linear(ch * side * side, h), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(h, h), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(h, num_classes),
        )
        _apply_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------- ResNet (CIFAR, option A)
class PadShortcut(nn.Module):
    """Option A shortcut (He et al. 2016): parameter-free. Subsamples the map by ``stride`` and pads
    the channels with zeros, ``lo`` before and ``hi`` after, so that the ``in_planes`` identity
    channels land in the middle of the ``planes`` output channels (the authors' code:
    ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))``)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        if planes < in_planes:
            raise ValueError(f"option A shortcut cannot shrink {in_planes} channels to {planes}")
        self.stride = stride
        self.lo = (planes - in_planes) // 2
        self.hi = planes - in_planes - self.lo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.lo, self.hi))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(in_planes, planes, stride)

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
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

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
        dropout probability (where the authors' code applies it).
    **model_kwargs
        ``width`` (multiplier of every hidden layer, all models), ``depth`` (``resnet_cifar``:
        6n+2), ``init`` (``lenet``, ``alexnet``, ``vgg``: "authors" or "he").

    Examples
    --------
    >>> net = build_model("resnet_cifar", 10, 1, 16, depth=20, width=0.5)
    >>> type(list(net.modules())[-1]).__name__
    'Linear'
    """
    if model not in MODELS:
        try:
            resolve(model)
        except ValueError as exc:
            raise KeyError(f"unknown model {model!r}; choose one of {sorted(MODELS)} ({exc})") from None
        return build_imported(model, num_classes, in_channels, image_size, dropout=dropout, **model_kwargs)
    return MODELS[model](num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                         dropout=dropout, **model_kwargs)


# --------------------------------------------------------------------------- imported runs' models
def resolve(model: str) -> str:
    """What kind of builder ``model`` names: ``"zoo"``, ``"paperlib"``, ``"torchvision"`` or ``"callable"``.

    Raises ValueError naming the model when it is none of them.
    """
    if model in ZOO_MODELS:
        return "zoo"
    if model in MODELS:
        return "paperlib"
    if ":" in model:
        return "callable"
    import torchvision

    if model in torchvision.models.list_models(module=torchvision.models):
        return "torchvision"
    raise ValueError(f"unknown model {model!r}: not one of paperlib's {sorted(MODELS)}, the zoo models "
                     f"{sorted(ZOO_MODELS)}, a torchvision classification model, or 'package.module:function'")


def build_imported(model: str, num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
                   **model_kwargs: Any) -> nn.Module:
    """The module of an imported run (see the module docstring); the fallback of ``build_model``."""
    kind = resolve(model)
    if kind == "zoo":
        return ZOO_MODELS[model](num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                                 dropout=dropout, **model_kwargs)
    if kind == "paperlib":
            return build_model(model, num_classes, in_channels, image_size, dropout=dropout, **model_kwargs)
    if kind == "torchvision":
        import torchvision

        if in_channels != 3:
            raise ValueError(f"torchvision model {model!r} takes 3 input channels, the population declares "
                             f"{in_channels}; use a 'package.module:function' that builds your variant")
        return torchvision.models.get_model(model, weights=None, num_classes=num_classes, **model_kwargs)
    module_name, _, func = model.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), func)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model {model!r}: cannot import {func!r} from {module_name!r} ({exc})") from exc
    return fn(**model_kwargs)


def classifier(model: nn.Module) -> nn.Linear:
    """The output layer (the last registered module, an ``nn.Linear``)."""
    last = list(model.modules())[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError(f"the last registered module of {type(model).__name__} is {type(last).__name__}, "
                        "not nn.Linear")
    return last
