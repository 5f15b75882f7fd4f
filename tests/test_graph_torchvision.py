"""torchvision networks (freshly initialised, weights=None, small inputs): the rolled graph
equals the reference built from the weights and the autograd channel flow, its centralities
equal networkx's (or, for graphs of millions of edges, scipy's on the reference matrix), and
the matrix-free unrolled products equal the explicit graph."""

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torchvision
from scipy.sparse.linalg import eigsh

from paperlib.graph import centrality
from paperlib import graph
from paperlib.train import models

from test_graph_reference import assert_rolled_equal

SHAPE = (3, 32, 32)


def _build(name):
    torch.manual_seed(0)
    tv = torchvision.models
    return {
        "resnet18": lambda: tv.resnet18(weights=None),
        "mobilenet_v2": lambda: tv.mobilenet_v2(weights=None),
        "googlenet": lambda: tv.googlenet(weights=None, aux_logits=True, init_weights=True).train(),
        "regnet_y_400mf": lambda: tv.regnet_y_400mf(weights=None),
        "densenet121": lambda: tv.densenet121(weights=None),
        "densenet-small": lambda: tv.DenseNet(growth_rate=8, block_config=(2, 3), num_init_features=16),
        "mobilenet_v2-0.25": lambda: tv.mobilenet_v2(weights=None, width_mult=0.25),
    }[name]()


def _perron(A):
    _, v = eigsh(A, k=1, which="LA", tol=1e-12, v0=np.ones(A.shape[0]))
    x = np.abs(v[:, 0])
    return x / np.linalg.norm(x)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "googlenet", "regnet_y_400mf",
                                  pytest.param("densenet121", marks=pytest.mark.slow)])
def test_rolled_graph_equals_reference(name):
    net = _build(name)
    g = graph.rolled_graph(net, SHAPE)
    ref = assert_rolled_equal(g, net, SHAPE)
    np.testing.assert_allclose(centrality.weighted_degree(g.operator), np.asarray(ref.sum(axis=1)).ravel(), rtol=1e-6)
    np.testing.assert_allclose(centrality.eigenvector_centrality(g.operator), _perron(ref), atol=1e-6)


@pytest.mark.parametrize("name", ["densenet-small", "mobilenet_v2-0.25"])
def test_small_variants_match_reference_and_networkx(name):
    net = _build(name)
    g = graph.rolled_graph(net, SHAPE)
    ref = assert_rolled_equal(g, net, SHAPE)
    G = nx.from_scipy_sparse_array(ref)
    deg = np.array([d for _, d in sorted(G.degree(weight="weight"))])
    np.testing.assert_allclose(centrality.weighted_degree(g.operator), deg, rtol=1e-6)
    ev = nx.eigenvector_centrality_numpy(G, weight="weight", tol=1e-12)
    np.testing.assert_allclose(centrality.eigenvector_centrality(g.operator), np.abs([ev[i] for i in range(g.n)]),
                               atol=1e-7)


@pytest.mark.parametrize("case", ["resnet18", "resnet34-paper"])
def test_unrolled_matrix_free_equals_explicit(case):
    """The max-pool stem with identity shortcuts (torchvision resnet18, the paper profile's
    ResNet-34 at a small width) used to crash the matrix-free product."""
    torch.manual_seed(0)
    if case == "resnet18":
        net, shape = torchvision.models.resnet18(weights=None), (3, 8, 8)
    else:
        net, shape = models.build_model("resnet34", 200, 3, 64, width=0.125), (3, 16, 16)
    u = graph.unrolled_graph(net, shape)
    A = u.materialize()
    assert u.n_edges == A.nnz // 2
    X = np.random.default_rng(0).random((u.n, 2))
    np.testing.assert_allclose(u.operator @ X, A @ X, rtol=1e-10)
    assert sp.issparse(A) and (abs(A - A.T)).max() == 0
