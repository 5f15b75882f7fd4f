"""Models: the authors' layer lists, parameter counts against hand-computed values and torchvision's,
rolled node counts against the paper's definition,
torch.fx tracing, the output layer's position, and one training step on every dataset loader."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.fx
import torch.nn as nn
import torchvision
from test_data import make_cifar10, make_tiny_imagenet
from torch.utils.data import DataLoader

from paperlib.train import data
from paperlib.train.models import build_model, classifier

SMALL = {  # small instances of every model, for fast tests
    "lenet": {"width": 0.5},
    "alexnet": {"width": 0.125, "init": "he"},
    "vgg": {"width": 0.0625},
    "resnet_cifar": {"depth": 8, "width": 0.25},
    "resnet34": {"width": 0.0625},
    "resnet50": {"width": 0.0625},
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_linear_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# The authors' layer lists (their GenData/model.py, AlexNet.py, VGG.py), written out by hand.
AUTHORS_SHAPES = {
    "lenet": [(6, 3, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120), (10, 84)],
    "alexnet": [(96, 3, 7, 7), (256, 96, 5, 5), (384, 256, 3, 3), (384, 384, 3, 3), (256, 384, 3, 3),
                (1024, 2304), (512, 1024), (10, 512)],
    "vgg": [(64, 3, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (256, 128, 3, 3), (256, 256, 3, 3),
            (256, 256, 3, 3), (256, 256, 3, 3), (128, 1024), (128, 128), (10, 128)],
}


@pytest.mark.parametrize("name", sorted(AUTHORS_SHAPES))
def test_authors_layers_on_cifar(name):
    model = build_model(name, 10, 3, 32)
    assert conv_linear_shapes(model) == AUTHORS_SHAPES[name]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_lenet_parameter_count_and_width():
    # 456 + 2416 + 48120 + 10164 + 850 weights and biases (no padding: 32 -> 28 -> 14 -> 10 -> 5)
    assert n_params(build_model("lenet", 10, 3, 32)) == 62_006
    wide = build_model("lenet", 10, 1, 16, width=2.0)  # 16 -> 12 -> 6 -> 2 -> 1
    assert conv_linear_shapes(wide) == [(12, 1, 5, 5), (32, 12, 5, 5), (240, 32), (168, 240), (10, 168)]
    # dropout after the two hidden fully connected layers, as Dropout_Net
    kinds = [type(m).__name__ for m in build_model("lenet", 10, 3, 32).classifier]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]


def test_alexnet_initialisation():
    torch.manual_seed(0)
    model = build_model("alexnet", 10, 3, 32)
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in lin + convs)
    assert abs(float(lin[0].weight.detach().std()) - 0.01) < 1e-3  # N(0, 0.01)
    c = convs[1]  # kaiming normal, fan_out = 256 * 25, ReLU gain
    expected = (2.0 / (c.out_channels * 25)) ** 0.5
    assert abs(float(c.weight.detach().std()) / expected - 1) < 0.02
    he = build_model("alexnet", 10, 3, 32, init="he")
    c = [m for m in he.modules() if isinstance(m, nn.Conv2d)][1]
    assert abs(float(c.weight.detach().std()) / (2.0 / (96 * 25)) ** 0.5 - 1) < 0.02  # fan_in
    with pytest.raises(ValueError, match="unknown init"):
        build_model("vgg", 10, 3, 32, init="xavier")


def resnet_cifar_params(n: int, k: int = 16, c_in: int = 3, classes: int = 10) -> int:
    """Hand count of a CIFAR ResNet of depth 6n+2 with parameter-free option A shortcuts."""
    total = c_in * k * 9 + 2 * k  # stem conv + BN
    c = k
    for planes in (k, 2 * k, 4 * k):
        for _ in range(n):
            total += c * planes * 9 + 2 * planes + planes * planes * 9 + 2 * planes
            c = planes
    return total + c * classes + classes


@pytest.mark.parametrize("depth", [8, 20, 32, 44])
def test_resnet_cifar_parameter_count(depth):
    n = (depth - 2) // 6
    assert n_params(build_model("resnet_cifar", 10, 3, 32, depth=depth)) == resnet_cifar_params(n)
    if depth == 20:  # He et al. (2016), Table 6: ResNet-20 has 0.27M parameters
        assert resnet_cifar_params(3) == 269_722
    if depth == 32:  # 0.46M
        assert round(resnet_cifar_params(5) / 1e6, 2) == 0.46
    convs = [m for m in build_model("resnet_cifar", 10, 3, 32, depth=depth).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth - 1  # 6n+1 weighted 3x3 convs, no shortcut convs


def test_option_a_shortcut_pads_channels_in_the_middle():
    from paperlib.train.models import PadShortcut

    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    out = PadShortcut(4, 8, 2)(x)
    assert out.shape == (2, 8, 2, 2)
    assert torch.equal(out[:, 2:6], x[:, :, ::2, ::2])  # the authors' planes // 4 on each side
    assert float(out[:, :2].abs().sum()) == 0.0 and float(out[:, 6:].abs().sum()) == 0.0


def test_resnet_cifar_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n\\+2"):
        build_model("resnet_cifar", 10, 3, 32, depth=21)


def test_too_small_inputs_are_refused():
    with pytest.raises(ValueError, match="AlexNet.*8x8"):
        build_model("alexnet", 10, 3, 8)


@pytest.mark.parametrize("name", ["resnet34", "resnet50"])
def test_torchvision_resnets_match_torchvision(name):
    ours = build_model(name, 1000, 3, 224)
    ref = getattr(torchvision.models, name)(weights=None)
    assert n_params(ours) == n_params(ref)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in ref.parameters()]


def paper_nodes(model: nn.Module, in_channels: int) -> int:
    """The paper's definition, straight from the modules: one node per input channel, per conv
    filter and per linear unit (outputs included)."""
    return in_channels + sum(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
                             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("name, kw, nodes", [("lenet", {}, 239), ("alexnet", {}, 2925), ("vgg", {}, 1613),
                                             ("resnet_cifar", {"depth": 32}, 1149),
                                             ("resnet_cifar", {"depth": 44}, 1597)])
def test_rolled_node_counts_are_the_authors(name, kw, nodes):
    from paperlib import graph

    model = build_model(name, 10, 3, 32, **kw).eval()
    assert paper_nodes(model, 3) == nodes
    g = graph.rolled_graph(model, (3, 32, 32))
    assert g.n_nodes == nodes


@pytest.mark.parametrize("name", sorted(SMALL))
def test_traceable_and_classifier_last(name):
    torch.manual_seed(0)
    model = build_model(name, 10, 3, 32, dropout=0.5, **SMALL[name]).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(traced(x), model(x))
    last = list(model.modules())[-1]
    assert isinstance(last, nn.Linear) and last is classifier(model) and last.out_features == 10
    # the classifier is also the last weighted layer in the traced graph
    weighted = [n.target for n in traced.graph.nodes
                if n.op == "call_module" and isinstance(traced.get_submodule(n.target), (nn.Linear, nn.Conv2d))]
    assert traced.get_submodule(weighted[-1]) is last


def test_dropout_is_applied():
    torch.manual_seed(0)
    model = build_model("lenet", 10, 1, 16, dropout=0.9).train()
    x = torch.rand(4, 1, 16, 16)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.fixture(scope="module")
def loaders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_cifar10(root, n=4)
    make_tiny_imagenet(root)
    out = {}
    for name in data.DATASETS:
        train, _ = data.load_dataset(name, 16, root=root, verify=False)
        out[name] = train
    yield out
    shutil.rmtree(root, ignore_errors=True)  # the suite's disk bound (conftest)


@pytest.mark.parametrize("dataset", sorted(data.DATASETS))
@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_training_step_on_every_loader(name, dataset, loaders):
    info = data.DATASETS[dataset]
    torch.manual_seed(0)
    model = build_model(name, info.num_classes, info.in_channels, 16, dropout=0.3, **SMALL[name])
    x, y = next(iter(DataLoader(loaders[dataset], batch_size=4, shuffle=True)))
    assert x.shape == (4, info.in_channels, 16, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = classifier(model).weight.detach().clone()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, classifier(model).weight)
