"""Node centralities of a weighted undirected graph given as a matrix or an operator (S2).

Both functions accept a symmetric non-negative adjacency ``A`` as a scipy sparse matrix, a
dense ``numpy`` array, or a ``scipy.sparse.linalg.LinearOperator`` (the matrix-free rolled
and unrolled graphs of :mod:`paperlib.graph`), and return one value per node.

Weights of diverged networks may be NaN or infinite. :func:`weighted_degree` lets them
propagate to the nodes they touch; :func:`eigenvector_centrality` returns a vector of NaN
for the whole graph (an eigenvector is undefined), so a caller can tell such a graph from a
graph with zero weights, whose centrality is uniform.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

__all__ = ["weighted_degree", "eigenvector_centrality"]

_DENSE_BELOW = 64  # graphs this small are solved with a dense eigendecomposition


_CONTROLLER = None


def _one_blas_thread():
    """Products of one vector are memory-bound; a multi-threaded BLAS only adds contention."""
    global _CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _is_operator(a) -> bool:
    return isinstance(a, LinearOperator) and not sp.issparse(a)


def weighted_degree(A) -> np.ndarray:
    """Weighted degree (strength) of every node: ``d_i = sum_j A[i, j]``.

    Parameters
    ----------
    A
        symmetric adjacency, ``n x n``: scipy sparse matrix, ``numpy`` array or
        ``LinearOperator`` (then ``d = A @ 1``, one product).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n,)``. A node with a NaN (infinite) edge weight gets NaN (inf).

    Notes
    -----
    The weighted degree is ``networkx.Graph.degree(weight="weight")`` of the same graph;
    self-loops, absent from the graphs of :mod:`paperlib.graph`, would count once here and
    twice in networkx.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[0., 2., 1.], [2., 0., 0.], [1., 0., 0.]])
    >>> weighted_degree(A)
    array([3., 2., 1.])
    """
    n = A.shape[0]
    if sp.issparse(A):
        return np.asarray(A.sum(axis=1), dtype=np.float64).ravel()
    if _is_operator(A):
        with _one_blas_thread():
            return np.asarray(A @ np.ones(n), dtype=np.float64).ravel()
    return np.asarray(A, dtype=np.float64).sum(axis=1)


def eigenvector_centrality(A, tol: float = 1e-10, v0: np.ndarray | None = None,
                           max_iter: int | None = None) -> np.ndarray:
    """Eigenvector centrality (Bonacich, 1972): the Perron vector of the adjacency.

    The centrality ``x`` solves ``A x = lambda_max x`` for the largest eigenvalue
    ``lambda_max`` of the symmetric non-negative ``A``, with ``x >= 0`` and ``||x||_2 = 1``:
    the normalisation of ``networkx.eigenvector_centrality(G, weight="weight")``, whose
    values it equals on connected graphs (networkx stops its power iteration at a looser
    tolerance).

    The graphs of neural networks are k-partite; a bipartite graph has ``-lambda_max`` in its
    spectrum too, so the largest *algebraic* eigenvalue is sought (ARPACK's Lanczos,
    ``which="LA"``), never the largest in magnitude, which could return the oscillating
    eigenvector of ``-lambda_max``. Any eigenvector of ``lambda_max`` taken in absolute value
    is again one (``|x|' A |x| >= x' A x``), which fixes its sign.

    Parameters
    ----------
    A
        symmetric non-negative adjacency: scipy sparse matrix, ``numpy`` array or
        ``LinearOperator``.
    tol
        relative accuracy of the eigenvalue asked of ARPACK (the eigenvector's error is of
        the order of ``tol * lambda_max / gap``).
    v0
        start vector (e.g. the centrality of the previous training epoch, which speeds up
        the iteration); default all ones, so the result is deterministic.
    max_iter
        ARPACK restarts (default ``10 n``).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n,)``, non-negative with unit L2 norm. Defined edge cases:

        * a graph without positive weights (all zero): the uniform vector ``1 / sqrt(n)``,
          as networkx returns for it;
        * any NaN or infinite weight: a vector of NaN;
        * a disconnected graph: a Perron vector of the component(s) with the largest
          ``lambda_max`` (not unique; networkx's power iteration may mix components).

    References
    ----------
    Bonacich, P. (1972). Factoring and weighting approaches to status scores and clique
    identification. Journal of Mathematical Sociology, 2(1), 113-120.

    Examples
    --------
    A star with three leaves: the centre has ``1/sqrt(2)``, each leaf ``1/sqrt(6)``.

    >>> import numpy as np
    >>> A = np.zeros((4, 4)); A[0, 1:] = A[1:, 0] = 1.0
    >>> np.round(eigenvector_centrality(A), 6)
    array([0.707107, 0.408248, 0.408248, 0.408248])

    A complete bipartite graph, whose spectrum is symmetric, matches networkx:

    >>> import networkx as nx, scipy.sparse as sp
    >>> G = nx.complete_bipartite_graph(2, 3)
    >>> x = eigenvector_centrality(sp.csr_matrix(nx.to_scipy_sparse_array(G)))
    >>> bool(np.allclose(x, list(nx.eigenvector_centrality(G).values()), atol=1e-6))
    True
    """
    with _one_blas_thread():
        return _eigenvector_centrality(A, tol, v0, max_iter)


def _eigenvector_centrality(A, tol: float, v0: np.ndarray | None, max_iter: int | None) -> np.ndarray:
    n = A.shape[0]
    if n == 0:
        return np.zeros(0)
    deg = weighted_degree(A)
    if not np.all(np.isfinite(deg)):
        return np.full(n, np.nan)
    if sp.issparse(A) and A.nnz and not np.all(np.isfinite(A.data)):
        return np.full(n, np.nan)
    if not np.any(deg > 0):
        return np.full(n, 1.0 / np.sqrt(n))
    if n <= _DENSE_BELOW:
        dense = _dense(A)
        vals, vecs = np.linalg.eigh(dense)
        x = vecs[:, -1]
    else:
        start = np.ones(n) if v0 is None else np.asarray(v0, dtype=np.float64).ravel()
        if not np.all(np.isfinite(start)) or not np.any(start):
            start = np.ones(n)
        # start inside the positive cone, so the Perron vector has weight in it
        start = np.abs(start) + 1e-3 * np.abs(start).max()
        try:
            _, vecs = eigsh(A, k=1, which="LA", v0=start, tol=tol, ncv=min(n - 1, 16),
                            maxiter=max_iter or 10 * n)
        except ArpackNoConvergence:
            return _power_iteration(A, deg, start)
        x = vecs[:, 0]
    x = np.abs(x)
    return x / np.linalg.norm(x)


def _dense(A) -> np.ndarray:
    if sp.issparse(A):
        return A.toarray()
    if _is_operator(A):
        return np.asarray(A @ np.eye(A.shape[0]))
    return np.asarray(A, dtype=np.float64)


def _power_iteration(A, deg: np.ndarray, x: np.ndarray, tol: float = 1e-12, max_iter: int = 100_000) -> np.ndarray:
    """Power iteration on ``A + c I`` with ``c = max degree >= lambda_max``: all shifted
    eigenvalues are non-negative, so it converges to the Perron vector (slowly)."""
    c = float(deg.max())
    x = x / np.linalg.norm(x)
    for _ in range(max_iter):
        y = A @ x + c * x
        y /= np.linalg.norm(y)
        if np.abs(y - x).max() < tol:
            return y
        x = y
    raise RuntimeError("eigenvector centrality: power iteration did not converge")


def eigenvector_centrality_batch(apply, n: int, batch: int, v0: np.ndarray | None = None,
                                 tol: float = 1e-10, ncv: int = 20, max_restarts: int = 200) -> np.ndarray:
    """Eigenvector centralities of a batch of graphs on ``n`` nodes, solved together.

    Same definition, normalisation and edge cases as :func:`eigenvector_centrality`, for
    ``batch`` graphs whose products are computed in one call (e.g. the snapshots of a
    training run, see ``UnrolledGraph.apply``), so that the cost of a product is shared.
    The solver is Lanczos with full reorthogonalisation and explicit restarts, run on all
    graphs at once: ``ncv`` steps, then the Ritz vector of the largest *algebraic* Ritz value
    (taken in absolute value) restarts the graphs whose residual
    ``||A x - theta x|| > tol * theta``.

    Parameters
    ----------
    apply
        callable mapping an array ``X`` of shape ``(batch, n)`` to the rows ``A_s @ X[s]``.
    n, batch
        nodes per graph and number of graphs.
    v0
        start vectors, ``(batch, n)`` (default all ones).
    tol
        relative residual at which a graph's vector is accepted.
    ncv
        Lanczos steps between restarts.
    max_restarts
        restarts before giving up (``RuntimeError``).

    Returns
    -------
    numpy.ndarray
        shape ``(batch, n)``; rows of NaN for graphs with NaN/inf weights, uniform
        ``1 / sqrt(n)`` rows for graphs without positive weights.

    Examples
    --------
    >>> import numpy as np
    >>> mats = np.stack([np.array([[0., 1, 0], [1, 0, 2], [0, 2, 0]]), np.ones((3, 3)) - np.eye(3)])
    >>> X = eigenvector_centrality_batch(lambda x: np.einsum("sij,sj->si", mats, x), 3, 2)
    >>> bool(np.allclose(X[0], eigenvector_centrality(mats[0])) and np.allclose(X[1], 3 ** -0.5))
    True
    """
    with _one_blas_thread():
        deg = np.asarray(apply(np.ones((batch, n))), dtype=np.float64).reshape(batch, n)
        out = np.empty((batch, n))
        bad = ~np.all(np.isfinite(deg), axis=1)
        zero = ~bad & ~np.any(deg > 0, axis=1)
        out[bad] = np.nan
        out[zero] = 1.0 / np.sqrt(n)
        todo = ~(bad | zero)
        if not todo.any():
            return out
        x = np.ones((batch, n)) if v0 is None else np.array(v0, dtype=np.float64).reshape(batch, n)
        x[~np.all(np.isfinite(x), axis=1) | ~np.any(x, axis=1)] = 1.0
        x = np.abs(x) + 1e-3 * np.abs(x).max(axis=1, keepdims=True)
        m = max(2, min(ncv, n))
        done = ~todo

        def safe_apply(v: np.ndarray) -> np.ndarray:
            y = np.asarray(apply(v), dtype=np.float64).reshape(batch, n)
            y[done] = 0.0  # finished or undefined graphs stay out of the arithmetic
            return y

        for _ in range(max_restarts):
            x[done] = 0.0
            x[~done] /= np.linalg.norm(x[~done], axis=1, keepdims=True)
            q = np.zeros((batch, m + 1, n))
            alpha, beta = np.zeros((batch, m)), np.zeros((batch, m))
            q[:, 0] = x
            for j in range(m):
                w = safe_apply(q[:, j])
                alpha[:, j] = np.einsum("sn,sn->s", w, q[:, j])
                for _ in range(2):  # full reorthogonalisation, twice (DGKS)
                    coef = np.einsum("sjn,sn->sj", q[:, :j + 1], w)
                    w -= np.einsum("sjn,sj->sn", q[:, :j + 1], coef)
                b = np.linalg.norm(w, axis=1)
                scale = np.abs(alpha[:, :j + 1]).max(axis=1) + (beta[:, :j].max(axis=1) if j else 0.0)
                live = b > 1e-12 * np.maximum(scale, 1e-300)
                beta[:, j] = np.where(live, b, 0.0)
                q[:, j + 1] = np.where(live[:, None], w / np.where(live, b, 1.0)[:, None], 0.0)
            t = np.zeros((batch, m, m))
            idx = np.arange(m)
            t[:, idx, idx] = alpha
            t[:, idx[:-1], idx[1:]] = beta[:, :-1]
            t[:, idx[1:], idx[:-1]] = beta[:, :-1]
            theta, y = np.linalg.eigh(t)
            top, ytop = theta[:, -1], y[:, :, -1]
            ritz = np.einsum("sjn,sj->sn", q[:, :m], ytop)
            resid = np.abs(beta[:, -1] * ytop[:, -1])
            conv = todo & ~done & (resid <= tol * np.maximum(np.abs(top), 1e-300))
            r = np.abs(ritz[conv])
            out[conv] = r / np.linalg.norm(r, axis=1, keepdims=True)
            done |= conv
            if done.all():
                return out
            x = np.abs(ritz)
        raise RuntimeError(f"eigenvector centrality: Lanczos did not converge for {int((~done).sum())} graph(s)")
