"""Every construct the graph walker follows, on small hand-written networks, against the
independent references of ``test_graph_reference`` (the paper's definition from the weights,
the channel flow from autograd), networkx's centralities, and explicit vs matrix-free
unrolled products; and what it refuses, with a message naming the module."""

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from paperlib.graph import centrality
from paperlib import graph

from test_graph_reference import assert_rolled_equal


class TupleOps(nn.Module):
    """chunk, split and torch.max(x, dim) return tuples; both halves must stay connected."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 8, 3, padding=1)
        self.b = nn.Conv2d(4, 3, 1)
        self.c = nn.Conv2d(4, 3, 1)
        self.d = nn.Linear(3 + 4 + 8, 5)

    def forward(self, x):
        y = self.a(x)
        p, q = torch.chunk(y, 2, dim=1)
        r, s = torch.split(y, [4, 4], dim=1)
        m, _ = torch.max(y, dim=2)  # (values, indices) over the rows: channel k feeds m[:, k]
        z = self.b(p) + self.c(s)
        return self.d(torch.cat([z.mean((2, 3)), q.amax((2, 3)) + r.mean((2, 3)), m.mean(2)], 1))


class Functional(nn.Module):
    """F.conv2d and F.linear with parameters, shapes unchanged (8 -> 8 channels, square weight)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.w = nn.Parameter(torch.randn(8, 8, 3, 3) * 0.1)
        self.lin = nn.Parameter(torch.randn(8, 8) * 0.1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = F.relu(F.conv2d(self.stem(x), self.w, padding=1))
        return self.fc(F.linear(y.mean((2, 3)), self.lin))


class FunctionalTwin(nn.Module):
    """The same network with modules, for the hook-based reference (same names, weights)."""

    def __init__(self, f: Functional):
        super().__init__()
        self.stem, self.fc = f.stem, f.fc
        self.w = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.lin = nn.Linear(8, 8, bias=False)
        with torch.no_grad():
            self.w.weight.copy_(f.w)
            self.lin.weight.copy_(f.lin)

    def forward(self, x):
        return self.fc(self.lin(F.relu(self.w(self.stem(x))).mean((2, 3))))


class Permute(nn.Module):
    """channel indexing with a permutation buffer, and a channel subset."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 6, 1)
        self.b = nn.Conv2d(6, 4, 3)
        self.c = nn.Conv2d(3, 2, 1)
        self.register_buffer("perm", torch.tensor([3, 5, 0, 1, 4, 2]))

    def forward(self, x):
        y = self.a(x)
        return self.b(y[:, self.perm]), self.c(y[:, 1:4])


class PadShortcut(nn.Module):
    """The option A shortcut: subsample, pad the channels so the identity lands in the middle."""

    def __init__(self, lo, hi):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.lo, self.hi))


class OptionA(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.short = PadShortcut(2, 2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = F.relu(self.conv2(F.relu(self.conv1(x))) + self.short(x))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class Shuffle(nn.Module):
    """ShuffleNet's channel shuffle written with view/transpose/view, and nn.ChannelShuffle."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)
        self.b = nn.Conv2d(6, 6, 3, padding=1, groups=2)
        self.shuffle = nn.ChannelShuffle(3)
        self.c = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.c(self.shuffle(self.b(y)))


class Grouped(nn.Module):
    """grouped and depthwise convolutions, max pooling, flatten into a linear layer."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.g = nn.Conv2d(6, 4, 1, groups=2)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        y = F.max_pool2d(self.g(F.relu(self.dw(self.a(x)))), 2)
        return self.fc(torch.flatten(y, 1))


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(avgpool(x))))), then a 1x1 convolution."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.fc1 = nn.Conv2d(4, 2, 1)
        self.fc2 = nn.Conv2d(2, 4, 1)
        self.b = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        y = self.a(x)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(y, 1)))))
        return self.b(y * s)


NETS = {"tuple-ops": (TupleOps, (2, 6, 6)), "functional": (Functional, (3, 5, 5)), "permute": (Permute, (2, 5, 5)),
        "option-a": (OptionA, (3, 8, 8)), "shuffle": (Shuffle, (3, 4, 4)), "grouped": (Grouped, (3, 4, 4)),
        "squeeze-excite": (SqueezeExcite, (3, 4, 4))}


@pytest.mark.parametrize("name", list(NETS))
def test_construct_matches_references(name):
    cls, shape = NETS[name]
    torch.manual_seed(0)
    net = cls()
    g = graph.rolled_graph(net, shape)
    assert_rolled_equal(g, FunctionalTwin(net) if name == "functional" else net, shape)
    # centralities equal networkx's on the exported graph
    G = g.to_networkx()
    assert G.number_of_edges() == g.n_edges
    assert min((d for _, _, d in G.edges(data="weight")), default=1) > 0  # no stored zeros
    deg = np.array([d for _, d in sorted(G.degree(weight="weight"))])
    np.testing.assert_allclose(centrality.weighted_degree(g.operator), deg, rtol=1e-10)
    if nx.is_connected(G):
        ev = nx.eigenvector_centrality_numpy(G, weight="weight")
        np.testing.assert_allclose(centrality.eigenvector_centrality(g.operator), np.abs([ev[i] for i in range(g.n)]),
                                   atol=1e-8)
    # unrolled: explicit and matrix-free agree
    u = graph.unrolled_graph(net, shape)
    A = u.materialize()
    assert u.n_edges == A.nnz // 2 and (abs(A - A.T)).max() == 0
    X = np.random.default_rng(0).random((u.n, 2))
    np.testing.assert_allclose(u.operator @ X, A @ X, rtol=1e-12, atol=1e-12)


def _block(g, a, b):
    sl = dict(g.layers)
    return g.adjacency.toarray()[sl[a]][:, sl[b]]


def test_tuple_ops_keep_every_branch_connected():
    torch.manual_seed(0)
    net = TupleOps()
    g = graph.rolled_graph(net, (2, 6, 6))
    assert nx.is_connected(g.to_networkx())
    wb = torch.linalg.vector_norm(net.b.weight.detach(), dim=(2, 3)).double().numpy()
    np.testing.assert_allclose(_block(g, "b", "a")[:, :4], wb, rtol=1e-6)
    wc = torch.linalg.vector_norm(net.c.weight.detach(), dim=(2, 3)).double().numpy()
    np.testing.assert_allclose(_block(g, "c", "a")[:, 4:], wc, rtol=1e-6)


def test_functional_layers_with_unchanged_shapes_are_layers():
    torch.manual_seed(0)
    net = Functional()
    g = graph.rolled_graph(net, (3, 5, 5))
    assert [n for n, _ in g.layers] == ["input", "stem", "w", "lin", "fc"]
    np.testing.assert_allclose(_block(g, "w", "stem"), torch.linalg.vector_norm(net.w.detach(), dim=(2, 3)).double(),
                               rtol=1e-6)
    np.testing.assert_allclose(_block(g, "lin", "w"), net.lin.detach().abs().double(), rtol=1e-6)
    # the weights of a snapshot are read from the parameter of that model
    other = Functional()
    np.testing.assert_allclose(_block(graph.GraphPlan(net, (3, 5, 5)).rolled(other), "lin", "w"),
                               other.lin.detach().abs().double(), rtol=1e-6)


def test_channel_permutation_permutes_the_block():
    torch.manual_seed(0)
    net = Permute()
    g = graph.rolled_graph(net, (2, 5, 5))
    norms = torch.linalg.vector_norm(net.b.weight.detach(), dim=(2, 3)).double().numpy()
    expect = np.zeros((4, 6))
    expect[:, net.perm.numpy()] = norms
    np.testing.assert_allclose(_block(g, "b", "a"), expect, rtol=1e-6)
    sub = _block(g, "c", "a")
    assert np.all(sub[:, [0, 4, 5]] == 0) and np.all(sub[:, 1:4] > 0)


def test_option_a_identity_channels_land_in_the_middle():
    torch.manual_seed(0)
    net = OptionA()
    g = graph.rolled_graph(net, (3, 8, 8))
    fc = net.fc.weight.detach().abs().double().numpy()
    np.testing.assert_allclose(_block(g, "fc", "stem"), fc[:, 2:6], rtol=1e-6)  # 4 channels -> 2..5 of 8
    np.testing.assert_allclose(_block(g, "fc", "conv2"), fc, rtol=1e-6)
    assert g.n_edges == 3 * 4 + 8 * 4 + 8 * 8 + 3 * 8 + 3 * 4


def test_grouped_convolutions_store_only_real_edges():
    torch.manual_seed(0)
    net = Grouped()
    g = graph.rolled_graph(net, (3, 4, 4))
    assert g.n_edges == 6 * 3 + 6 + 4 * 3 + 3 * 4
    assert g.adjacency.nnz == 2 * g.n_edges and np.all(g.adjacency.data > 0)
    dw = _block(g, "dw", "a")
    np.testing.assert_allclose(dw, np.diag(torch.linalg.vector_norm(net.dw.weight.detach(), dim=(1, 2, 3)).double()),
                               rtol=1e-6)


def test_squeeze_excitation_rule():
    """The gated map's channel k is fed by its producers and by unit k of the excitation layer."""
    torch.manual_seed(0)
    net = SqueezeExcite()
    g = graph.rolled_graph(net, (3, 4, 4))
    norms = torch.linalg.vector_norm(net.b.weight.detach(), dim=(2, 3)).double().numpy()
    np.testing.assert_allclose(_block(g, "b", "a"), norms, rtol=1e-6)
    np.testing.assert_allclose(_block(g, "b", "fc2"), norms, rtol=1e-6)
    assert np.all(_block(g, "b", "fc1") == 0)


def test_graph_does_not_depend_on_train_or_eval_mode():
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    net.train()
    a = graph.rolled_graph(net, (3, 32, 32))
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    b = graph.rolled_graph(net, (3, 32, 32))
    assert a.layers == b.layers and not any(n.startswith("aux") for n, _ in a.layers)
    assert (a.adjacency != b.adjacency).nnz == 0


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(2, 4, 1))
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.block(x).flatten(2)
        att = torch.softmax(y.transpose(1, 2) @ y, dim=-1)
        return self.out((y @ att).reshape(x.shape[0], 4, x.shape[2], x.shape[3]))


class SoftmaxChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 3, 1), nn.Conv2d(3, 2, 1)
        self.act = nn.Softmax(dim=1)

    def forward(self, x):
        return self.b(self.act(self.a(x)))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.seq = nn.Conv2d(2, 3, 1), nn.Conv1d(3, 2, 1)

    def forward(self, x):
        return self.seq(self.a(x).flatten(2))


@pytest.mark.parametrize("net,match", [
    (Attention(), r"module 'out' \(Conv2d\).*forward of Attention, operation matmul.*two activations.*Supported:"),
    (SoftmaxChannels(), r"module 'act' \(Softmax\), operation Softmax.*Softmax is not an operation.*Supported:"),
    (Conv1dNet(), r"module 'seq' \(Conv1d\).*weights of type Conv1d.*Supported:"),
])
def test_unsupported_constructs_are_refused_with_the_module(net, match):
    with pytest.raises(graph.UnsupportedGraphError, match=match):
        graph.rolled_graph(net, (2, 4, 4))


def test_an_unfollowable_value_that_no_layer_reads_is_harmless():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.Linear(8, 3), nn.Softmax(dim=1))
    g = graph.rolled_graph(net, (1, 2, 2))
    assert [n for n, _ in g.layers] == ["input", "0", "2"]
