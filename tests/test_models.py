"""Models: parameter counts against hand-computed values and torchvision's own models,
torch.fx tracing, the output layer's position, and one training step on every dataset loader."""

from __future__ import annotations

import pytest
import torch
import torch.fx
import torch.nn as nn
import torchvision
from test_data import make_cifar10, make_tiny_imagenet
from torch.utils.data import DataLoader

from paperlib import data
from paperlib.models import VGG_CFG, build_model, classifier

SMALL = {  # small instances of every model, for fast tests
    "lenet": {"width": 0.5},
    "alexnet": {"width": 0.125},
    "vgg": {"width": 0.0625},
    "resnet_cifar": {"depth": 8, "width": 0.25},
    "resnet34": {"width": 0.0625},
    "resnet50": {"width": 0.0625},
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lenet5_parameter_count():
    # LeNet-5 on 28x28 MNIST padded by 2: 156 + 2416 + 48120 + 10164 + 850 weights and biases
    assert n_params(build_model("lenet", 10, 1, 28)) == 61_706
    # width scales every hidden layer: 12 and 32 channels, 240 and 168 units
    wide = build_model("lenet", 10, 1, 28, width=2.0)
    shapes = [tuple(m.weight.shape) for m in wide.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert shapes == [(12, 1, 5, 5), (32, 12, 5, 5), (240, 32 * 25), (168, 240), (10, 168)]


def resnet_cifar_params(n: int, k: int = 16, c_in: int = 3, classes: int = 10) -> int:
    """Hand count of a CIFAR ResNet of depth 6n+2 with 1x1 projection shortcuts (option B)."""
    total = c_in * k * 9 + 2 * k  # stem conv + BN
    c = k
    for stage, planes in enumerate((k, 2 * k, 4 * k)):
        for j in range(n):
            total += c * planes * 9 + 2 * planes + planes * planes * 9 + 2 * planes
            if c != planes:
                total += c * planes + 2 * planes
            c = planes
    return total + c * classes + classes


@pytest.mark.parametrize("depth", [8, 20, 32, 44])
def test_resnet_cifar_parameter_count(depth):
    n = (depth - 2) // 6
    assert n_params(build_model("resnet_cifar", 10, 3, 32, depth=depth)) == resnet_cifar_params(n)
    # ResNet-20 of He et al. (option A shortcuts) has 0.27M parameters; B adds 2 projections
    if depth == 20:
        assert resnet_cifar_params(3) == 269_722 + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    convs = [m for m in build_model("resnet_cifar", 10, 3, 32, depth=depth).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth - 1 + 2  # 6n+1 weighted 3x3 convs + 2 shortcut convs


def test_resnet_cifar_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n\\+2"):
        build_model("resnet_cifar", 10, 3, 32, depth=21)


@pytest.mark.parametrize("name", ["resnet34", "resnet50"])
def test_torchvision_resnets_match_torchvision(name):
    ours = build_model(name, 1000, 3, 224)
    ref = getattr(torchvision.models, name)(weights=None)
    assert n_params(ours) == n_params(ref)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in ref.parameters()]


def test_vgg_configurations_match_torchvision():
    from torchvision.models.vgg import cfgs

    for depth, letter in [(11, "A"), (13, "B"), (16, "D"), (19, "E")]:
        assert VGG_CFG[depth] == cfgs[letter]
        convs = [m for m in build_model("vgg", 10, 3, 32, depth=depth, width=0.0625).features
                 if isinstance(m, nn.Conv2d)]
        widths = [max(1, round(v / 16)) for v in cfgs[letter] if v != "M"]
        assert [c.out_channels for c in convs] == widths
    # 16x16 inputs: only four of the five max pools fit; the classifier sees a 1x1 map
    vgg = build_model("vgg", 10, 1, 16, width=0.125)
    assert sum(isinstance(m, nn.MaxPool2d) for m in vgg.features) == 4
    assert vgg.classifier[1].in_features == 64


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
    return out


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
