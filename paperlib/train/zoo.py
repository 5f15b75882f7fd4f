"""The public zoos' architectures as models of ours.

The names below (:data:`ZOO_MODELS`) extend :func:`paperlib.train.models.build_model` (which falls
back to :func:`paperlib.train.models.build_imported` for a name it does not know), so the run store
of an imported population builds its modules the way a trained one does.

``zoo-cnn-s`` (Model Zoos, Schuerholt et al. 2022, their ``CNN``)
    ``module_list``: conv 5x5 (8) - max pool 2 - act - [dropout] - conv 5x5 (6) - max pool 2 - act
    - [dropout] - conv 2x2 (4) - act - flatten (36) - fc 20 - act - [dropout] - fc 10, for 28x28
    inputs. The dropout modules exist only when the run's dropout is above 0, as in their code, so
    the ``module_list.{i}`` indices of the weights depend on it (conv 0, 4, 8, fc 11, 14 with dropout;
    0, 3, 6, 9, 11 without). 2,464 parameters with one input channel, 2,864 with three.
``zoo-cnn-l`` (their ``CNN3``)
    conv 3x3 (16) - pool - act - dropout - conv 3x3 (32) - pool - act - dropout - conv 3x3 (15) -
    pool - act - dropout - flatten (60) - fc 20 - act - dropout - fc 10 for 32x32 inputs; the
    dropout modules are always present (conv 0, 4, 8, fc 13, 16). 10,853 parameters with three
    input channels.
``small-cnn-zoo`` (Small CNN Zoo, Unterthiner et al. 2020)
    three 3x3 convolutions of 16 filters, 'valid' padding, stride ``stride`` (2, the default of
    the zoo's training script), the run's activation, global average pooling, dense 10. One grey
    input channel. 4,970 parameters. The rolled graph does not depend on the stride; the unrolled
    graph does (it has one node per position), so the stride is a model argument, stated in the
    profile, and part of the population. ``w_init`` (with ``init_std``) initialises the kernels the
    way the zoo's Keras initialiser of that name does (:data:`KERAS_INITS`; biases 0, the zoo's
    ``b_init``); without it, PyTorch's default initialisation (the imported zoo's weights replace it).

``activation`` (``relu``, ``tanh``, ``sigmoid``, ``gelu``, ``leakyrelu``, ``silu``, ``linear``)
    is a model argument that changes no weight; the graphs do not depend on it.

Any other name is resolved by :func:`paperlib.train.models.build_imported`: a torchvision classification model name
(``resnet18``; built with ``weights=None`` and the population's classes) or a
``package.module:function`` called with the population's ``model_kwargs`` only.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "leakyrelu": nn.LeakyReLU,
    "silu": nn.SiLU, "elu": nn.ELU, "linear": nn.Identity,
}


def activation(name: str) -> nn.Module:
    key = str(name).lower().replace("_", "")
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[key]()


def _side(side: int, kernel: int, stride: int = 1) -> int:
    return (side - kernel) // stride + 1


class ZooCNN(nn.Module):
    """The Model Zoos' CNN-s (``size="s"``) and CNN-l (``size="l"``), with their ``module_list`` keys."""

    def __init__(self, size: str = "s", num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 dropout: float = 0.0, activation_name: str = "tanh"):
        super().__init__()
        if size not in ("s", "l"):
            raise ValueError(f"ZooCNN: size must be 's' or 'l', not {size!r}")
        act = lambda: activation(activation_name)  # noqa: E731
        layers: list[nn.Module] = []
        if size == "s":
            side = _side(_side(image_size, 5) // 2, 5) // 2
            side = _side(side, 2)
            drop = dropout > 0
            dropouts = [nn.Dropout(dropout)] if drop else []
            layers += [nn.Conv2d(in_channels, 8, 5), nn.MaxPool2d(2, 2), act()] + dropouts
            layers += [nn.Conv2d(8, 6, 5), nn.MaxPool2d(2, 2), act()] + ([nn.Dropout(dropout)] if drop else [])
            layers += [nn.Conv2d(6, 4, 2), act(), nn.Flatten(), nn.Linear(4 * side * side, 20), act()]
            layers += ([nn.Dropout(dropout)] if drop else []) + [nn.Linear(20, num_classes)]
        else:
            side = _side(_side(_side(image_size, 3) // 2, 3) // 2, 3) // 2
            for cin, cout in ((in_channels, 16), (16, 32), (32, 15)):
                layers += [nn.Conv2d(cin, cout, 3), nn.MaxPool2d(2, 2), act(), nn.Dropout(dropout)]
            layers += [nn.Flatten(), nn.Linear(15 * side * side, 20), act(), nn.Dropout(dropout),
                       nn.Linear(20, num_classes)]
        if side < 1:
            raise ValueError(f"ZooCNN-{size}: {image_size}x{image_size} inputs shrink to nothing")
        self.module_list = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.module_list:
            x = layer(x)
        return x


_TRUNC = 0.87962566103423978  # std of a unit normal truncated at +-2: Keras's VarianceScaling correction


def _trunc(w: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std)


#: Keras initialisers by name, on a kernel with its TensorFlow fans (conv: k*k*in, k*k*out; dense: in, out)
KERAS_INITS: dict[str, Callable[[torch.Tensor, int, int, float], None]] = {
    "he_normal": lambda w, fi, fo, std: _trunc(w, (2.0 / fi) ** 0.5 / _TRUNC),
    "glorot_normal": lambda w, fi, fo, std: _trunc(w, (2.0 / (fi + fo)) ** 0.5 / _TRUNC),
    "glorot_uniform": lambda w, fi, fo, std: nn.init.uniform_(w, -(6.0 / (fi + fo)) ** 0.5, (6.0 / (fi + fo)) ** 0.5),
    "random_normal": lambda w, fi, fo, std: nn.init.normal_(w, 0.0, std),
    "truncated_normal": lambda w, fi, fo, std: _trunc(w, std),
}


class SmallCNN(nn.Module):
    """The Small CNN Zoo's network: 3 x conv 3x3 (16, 'valid', ``stride``), global average pooling, dense."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, dropout: float = 0.0,
                 stride: int = 2, activation_name: str = "relu", filters: int = 16, w_init: str | None = None,
                 init_std: float = 0.05):
        super().__init__()
        side = _side(_side(_side(image_size, 3, stride), 3, stride), 3, stride)
        if side < 1:
            raise ValueError(f"SmallCNN: {image_size}x{image_size} inputs shrink to nothing at stride {stride}")
        self.conv1 = nn.Conv2d(in_channels, filters, 3, stride=stride)
        self.conv2 = nn.Conv2d(filters, filters, 3, stride=stride)
        self.conv3 = nn.Conv2d(filters, filters, 3, stride=stride)
        self.act = activation(activation_name)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(filters, num_classes)
        if w_init is not None:
            if w_init not in KERAS_INITS:
                raise ValueError(f"SmallCNN: unknown w_init {w_init!r}; choose one of {sorted(KERAS_INITS)}")
            with torch.no_grad():
                for layer in (self.conv1, self.conv2, self.conv3, self.dense):
                    w = layer.weight
                    rf = w[0, 0].numel() if w.ndim == 4 else 1
                    KERAS_INITS[w_init](w, w.shape[1] * rf, w.shape[0] * rf, float(init_std))
                    layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.act(self.conv1(x)))
        x = self.dropout(self.act(self.conv2(x)))
        x = self.dropout(self.act(self.conv3(x)))
        return self.dense(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _zoo(size: str) -> Callable[..., nn.Module]:
    def build(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, dropout: float = 0.0,
              activation: str = "tanh") -> nn.Module:
        return ZooCNN(size, num_classes, in_channels, image_size, dropout, activation)
    return build


def _small(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, dropout: float = 0.0,
           stride: int = 2, activation: str = "relu", w_init: str | None = None, init_std: float = 0.05) -> nn.Module:
    return SmallCNN(num_classes, in_channels, image_size, dropout, stride, activation, w_init=w_init, init_std=init_std)


ZOO_MODELS: dict[str, Callable[..., nn.Module]] = {
    "zoo-cnn-s": _zoo("s"),
    "zoo-cnn-l": _zoo("l"),
    "small-cnn-zoo": _small,
}

