"""The rolled graph: hand-computed weights, data-flow connectivity, residual sums, exports."""

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from paperlib import graph
from paperlib.train import models


def _layer_index(g, name):
    return [n for n, _ in g.layers].index(name)


def _block(g, a, b):
    """Dense adjacency block between layers named a and b."""
    A = g.adjacency.toarray()
    return A[dict(g.layers)[a]][:, dict(g.layers)[b]]


def test_two_layer_network_hand_computed():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, bias=True), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(3 * 2 * 2, 4))
    g = graph.rolled_graph(net, input_shape=(2, 6, 6))
    assert [(n, s.stop - s.start) for n, s in g.layers] == [("input", 2), ("0", 3), ("4", 4)]
    K = net[0].weight.detach().numpy().astype(np.float64)
    W = net[4].weight.detach().numpy().astype(np.float64)
    conv = np.array([[np.sqrt(sum(K[l, k, i, j] ** 2 for i in range(3) for j in range(3)))
                      for k in range(2)] for l in range(3)])
    lin = np.array([[np.sqrt(sum(W[l, k * 4 + p] ** 2 for p in range(4))) for k in range(3)] for l in range(4)])
    np.testing.assert_allclose(_block(g, "0", "input"), conv, rtol=1e-6)
    np.testing.assert_allclose(_block(g, "4", "0"), lin, rtol=1e-6)
    np.testing.assert_allclose(_block(g, "4", "input"), 0)  # no skip edges in a chain
    A = g.adjacency
    assert A.dtype == np.float64 and (A != A.T).nnz == 0 and A.diagonal().sum() == 0
    assert g.n_edges == 2 * 3 + 3 * 4


def test_linear_after_linear_is_absolute_weight():
    net = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Dropout(0.5), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -4.0]]))
        net[3].weight.copy_(torch.tensor([[-1.5, 2.5], [0.25, -0.75]]))
    g = graph.rolled_graph(net)
    np.testing.assert_allclose(_block(g, "0", "input"), [[1, 2, 0.5], [0, 3, 4]])
    np.testing.assert_allclose(_block(g, "3", "0"), [[1.5, 2.5], [0.25, 0.75]])
    assert g.n_edges == 6 + 4  # the zero weight is an edge of weight 0


def _chain_reference(model, side):
    """Loop-built rolled adjacency of a chain network, layers in registration order."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    units = [layers[0].in_channels] + [getattr(m, "out_channels", None) or m.out_features for m in layers]
    starts = np.concatenate([[0], np.cumsum(units)])
    A = np.zeros((starts[-1], starts[-1]))
    for i, m in enumerate(layers):
        w = m.weight.detach().double().numpy()
        per = w.shape[1] // units[i] if isinstance(m, nn.Linear) else None
        for l in range(w.shape[0]):
            for k in range(units[i]):
                v = np.linalg.norm(w[l, k]) if per is None else np.linalg.norm(w[l, k * per:(k + 1) * per])
                A[starts[i + 1] + l, starts[i] + k] = A[starts[i] + k, starts[i + 1] + l] = v
    return A


@pytest.mark.parametrize("name,kw,side", [("lenet", {}, 16), ("alexnet", {"width": 0.125}, 32),
                                          ("vgg", {"width": 0.125}, 16)])
def test_chain_networks_match_loop_reference(name, kw, side):
    torch.manual_seed(1)
    net = models.build_model(name, 10, 3, side, **kw)
    g = graph.rolled_graph(net)
    np.testing.assert_allclose(g.adjacency.toarray(), _chain_reference(net, side), rtol=1e-6, atol=1e-12)


def test_input_shape_is_inferred_for_a_16px_model():
    net = models.build_model("lenet", 10, 1, 16)
    plan = graph.GraphPlan(net)
    assert plan.input_shape == (1, 16, 16)
    with pytest.raises(ValueError, match="input_shape"):
        graph.GraphPlan(net, (1, 100, 3))


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.short(x))


class SmallResNet(nn.Module):
    """stem -> identity block -> block with a 1x1 shortcut convolution -> pool -> fc."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.b1 = _Block(4, 4, 1)
        self.b2 = _Block(4, 6, 2)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.b2(self.b1(F.relu(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_residual_sums_and_shortcuts_follow_the_data():
    torch.manual_seed(0)
    net = SmallResNet()
    g = graph.rolled_graph(net, (3, 8, 8))
    names = [n for n, _ in g.layers]
    assert names == ["input", "stem", "b1.conv1", "b1.conv2", "b2.conv1", "b2.conv2", "b2.short.0", "fc"]
    pairs = {(names[c], names[p]) for c, p, _ in g.blocks}
    assert pairs == {
        ("stem", "input"), ("b1.conv1", "stem"), ("b1.conv2", "b1.conv1"),
        # the identity block's sum = b1.conv2 + stem: both feed b2's convolutions
        ("b2.conv1", "b1.conv2"), ("b2.conv1", "stem"), ("b2.short.0", "b1.conv2"), ("b2.short.0", "stem"),
        ("b2.conv2", "b2.conv1"),
        # the projection block's sum = b2.conv2 + b2.short.0: both feed fc
        ("fc", "b2.conv2"), ("fc", "b2.short.0"),
    }
    norms = torch.linalg.vector_norm(net.b2.conv1.weight.detach(), dim=(2, 3)).double().numpy()
    np.testing.assert_allclose(_block(g, "b2.conv1", "stem"), norms, rtol=1e-6)
    np.testing.assert_allclose(_block(g, "b2.conv1", "b1.conv2"), norms, rtol=1e-6)
    np.testing.assert_allclose(_block(g, "b2.short.0", "stem"), net.b2.short[0].weight[:, :, 0, 0].abs().double().detach(),
                               rtol=1e-6)
    np.testing.assert_allclose(_block(g, "fc", "b2.short.0"), net.fc.weight.abs().double().detach(), rtol=1e-6)
    # the block operator and the CSR matrix agree
    x = np.random.default_rng(0).random(g.n)
    np.testing.assert_allclose(g.operator @ x, g.adjacency @ x, rtol=1e-12)


def test_channel_concatenation_places_producers_side_by_side():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 3, 1), nn.Conv2d(5, 2, 1)

        def forward(self, x):
            return self.c(torch.cat([self.a(x), self.b(x)], dim=1))

    net = Cat()
    g = graph.rolled_graph(net, (1, 4, 4))
    w = net.c.weight[:, :, 0, 0].abs().double().detach().numpy()
    np.testing.assert_allclose(_block(g, "c", "a"), w[:, :2], rtol=1e-6)
    np.testing.assert_allclose(_block(g, "c", "b"), w[:, 2:], rtol=1e-6)


def test_spatial_transpose_is_followed_and_sorting_refused():
    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 2, 1), nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(torch.flatten(self.c(x).transpose(2, 3), 1))

    net = T()
    g = graph.rolled_graph(net, (1, 2, 2))  # channel c still owns features 4c..4c+3
    w = net.fc.weight.detach().double().numpy()
    np.testing.assert_allclose(_block(g, "fc", "c"), np.linalg.norm(w.reshape(2, 2, 4), axis=2), rtol=1e-6)

    class S(T):
        def forward(self, x):
            return self.fc(torch.flatten(torch.sort(self.c(x), dim=1).values, 1))

    with pytest.raises(NotImplementedError, match=r"module 'fc' \(Linear\).*operation sort"):
        graph.rolled_graph(S(), (1, 2, 2))


def test_to_networkx_round_trip():
    torch.manual_seed(0)
    g = graph.rolled_graph(SmallResNet(), (3, 8, 8))
    G = g.to_networkx()
    assert G.number_of_nodes() == g.n and G.number_of_edges() == g.n_edges
    A = nx.to_scipy_sparse_array(G, nodelist=range(g.n), weight="weight")
    np.testing.assert_allclose(A.toarray(), g.adjacency.toarray())
    assert G.nodes[0]["layer"] == "input" and G.nodes[g.n - 1]["layer"] == "fc"


def test_csr_is_canonical():
    torch.manual_seed(0)
    g = graph.rolled_graph(SmallResNet(), (3, 8, 8))
    A = g.adjacency
    B = A.copy()
    B.has_sorted_indices = False
    B.sort_indices()
    assert np.array_equal(A.indices, B.indices) and np.array_equal(A.data, B.data)
    assert g.nbytes == A.data.nbytes + A.indices.nbytes + A.indptr.nbytes


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "resnet18", "resnet50"])
def test_torchvision_models(name):
    import torchvision

    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None)
    g = graph.rolled_graph(net)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    units = 3 + sum(getattr(m, "out_channels", None) or m.out_features for m in convs)
    assert g.n == units and len(g.layers) == len(convs) + 1
    if name.startswith("resnet"):  # skips land where the data flows: the fc reads every branch of the last sum
        fc = _layer_index(g, "fc")
        producers = {g.layers[p][0] for c, p, _ in g.blocks if c == fc}
        assert producers == {"layer4.0.downsample.0"} | {f"layer4.{i}.conv{3 if name == 'resnet50' else 2}"
                                                         for i in range(len(net.layer4))}
    x = np.random.default_rng(0).random(g.n)
    y = g.operator @ x
    assert y.shape == (g.n,) and np.all(y > 0)
