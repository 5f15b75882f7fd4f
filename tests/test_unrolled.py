"""The unrolled graph: explicit matrix vs matrix-free operator, and hand-computed edges."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from paperlib.graph import centrality
from paperlib import graph
from paperlib.train import models

from test_graph import SmallResNet


def _loop_conv_matrix(conv, h, w):
    """Unrolled matrix of one convolution, one loop iteration per multiplication."""
    K = conv.weight.detach().double().numpy()
    co, ci, kh, kw = K.shape
    s, p = conv.stride[0], conv.padding[0]
    ho, wo = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    M = np.zeros((co * ho * wo, ci * h * w))
    for o in range(co):
        for y in range(ho):
            for x in range(wo):
                for c in range(ci):
                    for a in range(kh):
                        for b in range(kw):
                            i, j = y * s - p + a, x * s - p + b
                            if 0 <= i < h and 0 <= j < w:
                                M[o * ho * wo + y * wo + x, c * h * w + i * w + j] += abs(K[o, c, a, b])
    return M


def test_single_convolution_hand_computed():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1))
    u = graph.unrolled_graph(net, (2, 5, 5))
    A = u.materialize().toarray()
    M = _loop_conv_matrix(net[0], 5, 5)
    n_in = 2 * 25
    np.testing.assert_allclose(A[n_in:, :n_in], M, rtol=1e-6)
    np.testing.assert_allclose(A[:n_in, n_in:], M.T, rtol=1e-6)
    assert u.n_nodes == 50 + 3 * 9 and u.n_edges == np.count_nonzero(M)


def test_pooling_is_folded_into_the_next_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
    u = graph.unrolled_graph(net, (1, 4, 4))
    A = u.materialize().toarray()
    W = net[3].weight.detach().double().abs().numpy()
    lin, conv = u.layers[2][1], u.layers[1][1]
    block = A[lin, conv]  # 3 x (2 channels x 16 positions)
    for l in range(3):
        for c in range(2):
            for y in range(4):
                for x in range(4):
                    # position (y, x) lies in exactly one 2x2 window, pooled index (y//2, x//2)
                    assert np.isclose(block[l, c * 16 + y * 4 + x], W[l, c * 4 + (y // 2) * 2 + x // 2])


def _nets():
    torch.manual_seed(0)

    class Mixed(nn.Module):  # padding, stride, dilation, groups, avg pooling, concatenation
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 4, 3, padding=2, dilation=2)
            self.b = nn.Conv2d(2, 2, 1)
            self.c = nn.Conv2d(6, 6, 3, stride=2, groups=3)
            self.p = nn.AvgPool2d(3, stride=2, padding=1)
            self.fc = nn.Linear(6 * 2 * 2 + 6, 5)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], 1)
            z = self.p(torch.relu(self.c(y)))
            return self.fc(torch.cat([torch.flatten(z, 1), y.mean((2, 3))], 1))

    return {
        "lenet": (models.build_model("lenet", 10, 1, 16), (1, 16, 16)),
        "resnet": (models.build_model("resnet_cifar", 10, 1, 16, depth=8, width=0.25), (1, 16, 16)),
        "small-resnet": (SmallResNet(), (3, 8, 8)),
        "mixed": (Mixed(), (2, 9, 9)),
    }


@pytest.mark.parametrize("name", ["lenet", "resnet", "small-resnet", "mixed"])
def test_explicit_and_matrix_free_agree(name):
    net, shape = _nets()[name]
    u = graph.unrolled_graph(net, shape)
    A = u.materialize()
    assert (abs(A - A.T)).max() == 0 and A.min() >= 0
    assert u.n_edges == A.nnz // 2 and u.nbytes == A.data.nbytes + A.indices.nbytes + A.indptr.nbytes
    X = np.random.default_rng(0).random((u.n, 3))
    np.testing.assert_allclose(u.operator @ X, A @ X, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(centrality.weighted_degree(u.operator), centrality.weighted_degree(A), rtol=1e-12)
    np.testing.assert_allclose(centrality.eigenvector_centrality(u.operator), centrality.eigenvector_centrality(A),
                               atol=1e-9)


def test_batch_of_snapshots_matches_single_graphs():
    torch.manual_seed(0)
    nets = [models.build_model("resnet_cifar", 10, 1, 16, depth=8, width=0.25) for _ in range(3)]
    plan = graph.GraphPlan(nets[0], (1, 16, 16))
    ub = plan.unrolled(nets)
    assert ub.batch == 3
    X = np.random.default_rng(1).random((3, ub.n))
    Y = ub.apply(X)
    for i, m in enumerate(nets):
        np.testing.assert_allclose(Y[i], plan.unrolled(m).materialize() @ X[i], rtol=1e-12)
    E = centrality.eigenvector_centrality_batch(ub.apply, ub.n, 3)
    np.testing.assert_allclose(E[1], centrality.eigenvector_centrality(plan.unrolled(nets[1]).operator), atol=1e-8)


def test_materialize_refuses_graphs_above_the_cap():
    net = models.build_model("lenet", 10, 1, 16)
    u = graph.unrolled_graph(net, (1, 16, 16))
    with pytest.raises(MemoryError, match=f"{u.n_edges:,} edges"):
        u.materialize(max_bytes=1000)


def test_size_table(tmp_path, monkeypatch):
    import dataclasses

    from paperlib import paths
    from paperlib.profiles import get_profile

    monkeypatch.setattr(paths, "RESULTS", tmp_path)
    p = get_profile("smoke")
    p = dataclasses.replace(p, populations=p.populations[:1])
    df = graph.write_size_table(p)
    assert (tmp_path / "smoke" / "graph_sizes.csv").exists()
    pop = p.populations[0]
    torch.manual_seed(0)
    net = models.build_model(pop.model, 10, 1, 16, **pop.model_kwargs)
    A = graph.unrolled_graph(net, (1, 16, 16)).materialize()
    row = df.iloc[0]
    assert row["unrolled_edges"] == A.nnz // 2 and row["unrolled_nodes"] == A.shape[0]
    assert row["rolled_edges"] == graph.rolled_graph(net).adjacency.nnz // 2
