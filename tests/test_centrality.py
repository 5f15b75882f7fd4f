"""Weighted degree and eigenvector centrality against networkx, numpy and defined edge cases."""

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import aslinearoperator

from paperlib.graph import centrality
from paperlib import graph
from paperlib.train import models

from test_graph import SmallResNet


def _nx_reference(g):
    """networkx on the exported graph: weighted degree, and the eigenvector from networkx's
    ARPACK-based ``eigenvector_centrality_numpy`` (the power iteration of
    ``eigenvector_centrality`` converges too slowly at a tight tolerance on these graphs)."""
    G = g.to_networkx()
    deg = np.array([d for _, d in sorted(G.degree(weight="weight"))])
    ev = nx.eigenvector_centrality_numpy(G, weight="weight", tol=1e-12)
    return deg, np.abs([ev[i] for i in range(g.n)])


def _rolled(name):
    torch.manual_seed(0)
    if name == "lenet":
        return graph.rolled_graph(models.build_model("lenet", 10, 1, 16))
    if name == "alexnet":
        return graph.rolled_graph(models.build_model("alexnet", 10, 3, 32, width=0.125))
    return graph.rolled_graph(SmallResNet(), (3, 8, 8))


@pytest.mark.parametrize("name", ["lenet", "alexnet", "resnet"])
def test_rolled_centralities_match_networkx(name):
    g = _rolled(name)
    deg_ref, ev_ref = _nx_reference(g)
    vals, vecs = np.linalg.eigh(g.adjacency.toarray())
    exact = np.abs(vecs[:, -1])
    np.testing.assert_allclose(ev_ref, exact, atol=1e-8)
    for A in (g.adjacency, g.operator):
        np.testing.assert_allclose(centrality.weighted_degree(A), deg_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(centrality.eigenvector_centrality(A), ev_ref, atol=1e-8)


def test_rolled_resnet_matches_networkx_power_iteration():
    g = _rolled("resnet")
    ref = nx.eigenvector_centrality(g.to_networkx(), weight="weight", tol=1e-9, max_iter=100_000)
    np.testing.assert_allclose(centrality.eigenvector_centrality(g.operator), [ref[i] for i in range(g.n)],
                               atol=1e-6)


def test_matches_default_networkx_call_on_a_connected_graph():
    G = nx.gnm_random_graph(120, 600, seed=3)
    rng = np.random.default_rng(3)
    for u, v in G.edges:
        G[u][v]["weight"] = rng.random() * 3
    A = nx.to_scipy_sparse_array(G, nodelist=range(120), format="csr")
    ref = nx.eigenvector_centrality(G, weight="weight")
    np.testing.assert_allclose(centrality.eigenvector_centrality(A), [ref[i] for i in range(120)], atol=1e-5)


def test_k_partite_graph_with_symmetric_spectrum():
    # complete tripartite path: layer sizes 5-7-3, symmetric spectrum (bipartite)
    rng = np.random.default_rng(0)
    B1, B2 = rng.random((7, 5)), rng.random((3, 7))
    A = sp.bmat([[None, B1.T, None], [B1, None, B2.T], [None, B2, None]], format="csr")
    vals, vecs = np.linalg.eigh(A.toarray())
    assert np.isclose(vals[0], -vals[-1])  # +-lambda_max
    exact = np.abs(vecs[:, -1])
    for op in (A, aslinearoperator(A), A.toarray()):
        x = centrality.eigenvector_centrality(op)
        np.testing.assert_allclose(x, exact, atol=1e-10)
        assert np.all(x >= 0) and np.isclose(np.linalg.norm(x), 1)


def test_large_bipartite_graph_uses_the_positive_end_of_the_spectrum():
    rng = np.random.default_rng(1)
    B = sp.random(300, 200, density=0.05, random_state=1, format="csr")
    B.data = rng.random(B.nnz)
    A = sp.bmat([[None, B.T], [B, None]], format="csr")
    x = centrality.eigenvector_centrality(A)
    lam = x @ (A @ x)
    np.testing.assert_allclose(A @ x, lam * x, atol=1e-8)
    assert lam > 0 and np.isclose(lam, sp.linalg.eigsh(A, k=1, which="LA")[0][0])


def test_zero_weights_give_uniform_vector():
    A = sp.csr_matrix((np.zeros(4), ([0, 1, 2, 3], [1, 0, 3, 2])), shape=(4, 4))
    np.testing.assert_allclose(centrality.eigenvector_centrality(A), 0.5)
    np.testing.assert_allclose(centrality.weighted_degree(A), 0.0)
    G = nx.Graph()
    G.add_weighted_edges_from([(0, 1, 0.0), (2, 3, 0.0)])
    np.testing.assert_allclose(list(nx.eigenvector_centrality(G, weight="weight").values()), 0.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_give_nan(bad):
    A = np.ones((80, 80)) - np.eye(80)
    A[3, 4] = A[4, 3] = bad
    for op in (A, sp.csr_matrix(A), aslinearoperator(sp.csr_matrix(A))):
        assert np.all(np.isnan(centrality.eigenvector_centrality(op)))
        d = centrality.weighted_degree(op)
        assert not np.isfinite(d[3]) and not np.isfinite(d[4]) and np.all(np.isfinite(np.delete(d, [3, 4])))


def test_zero_layer_in_a_network():
    torch.manual_seed(0)
    net = models.build_model("lenet", 10, 1, 16)
    with torch.no_grad():
        [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1].weight.zero_()
    g = graph.rolled_graph(net)
    x = centrality.eigenvector_centrality(g.operator)
    assert np.all(np.isfinite(x)) and np.all(x >= 0) and np.isclose(np.linalg.norm(x), 1)
    lam = x @ (g.adjacency @ x)
    np.testing.assert_allclose(g.adjacency @ x, lam * x, atol=1e-8)


def test_batch_solver_matches_single_and_edge_cases():
    torch.manual_seed(0)
    nets = [models.build_model("lenet", 10, 1, 16) for _ in range(3)]
    with torch.no_grad():
        nets[1].features[0].weight[0, 0, 0, 0] = float("nan")
        for p in nets[2].parameters():
            p.zero_()
    plan = graph.GraphPlan(nets[0])
    gs = [plan.rolled(m) for m in nets] + [plan.rolled(nets[0])]
    X = centrality.eigenvector_centrality_batch(graph.stack_rolled(gs), gs[0].n, len(gs))
    np.testing.assert_allclose(X[0], centrality.eigenvector_centrality(gs[0].adjacency), atol=1e-9)
    np.testing.assert_allclose(X[3], X[0], atol=1e-9)
    assert np.all(np.isnan(X[1]))
    np.testing.assert_allclose(X[2], 1 / np.sqrt(gs[0].n))


@pytest.mark.parametrize("module", ["paperlib.graph.centrality", "paperlib.graph.plan"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
