"""The rolled graph (Section 2 of the paper), stored as weight blocks between layers.

Nodes: the input's units (channels), then one node per filter of every convolution and one
per output feature of every linear layer, in the order the data reaches them. An edge joins
unit ``u`` of a producer and unit ``l`` of a consumer when ``l`` has a weight that
multiplies an element fed by ``u``; its weight is the L2 norm of all such weights:

* a convolution with kernel ``K`` reading producer channel ``u`` as its input channel ``k``:
  ``||K[l, k, :, :]||_2`` (the paper's definition); a grouped or depthwise convolution only
  joins the channels of its group, and only those edges are stored;
* a linear layer reading a vector: ``|W[l, k]|``; reading a flattened ``C x H x W`` map:
  ``||W[l, block_u]||_2`` over the ``H*W`` columns fed by channel ``u``;
* in general, when ``u`` feeds several input slots ``S(u)`` of ``l`` (e.g. a channel copied
  twice), ``sqrt(sum_{k in S(u)} ||slice(l, k)||^2)``.

Which producer units feed which input slots is read from the channel flow
(:mod:`paperlib.graph.flow`): at a residual sum a consumer is joined to every producer of
the sum with the same kernel-slice norms; a concatenation, channel index/permutation/shuffle
or channel padding places the producer's units at the input channels they land on (with the
authors' option A shortcut, the identity channels land in the middle of the wider range and
the padded channels are fed by nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator

__all__ = ["RolledGraph", "build_rolled", "stack_rolled", "csr_bytes"]


def csr_bytes(n: int, nnz: int) -> int:
    """Bytes of a CSR matrix: float64 data, int32 indices (int64 from 2**31 entries)."""
    idx = 4 if max(nnz, n) < 2**31 else 8
    return int(nnz * (8 + idx) + (n + 1) * idx)


def _np(w: torch.Tensor) -> np.ndarray:
    if w.dtype not in (torch.float32, torch.float64):
        w = w.float()
    return w.numpy()


def _sq_norms(w: np.ndarray) -> np.ndarray:
    """L2 norm along the last axis of a float array, returned as float64."""
    if w.shape[-1] == 1:
        return np.abs(w[..., 0], dtype=np.float64)
    return np.sqrt(np.einsum("...k,...k->...", w, w), dtype=np.float64)


def build_rolled(plan, model) -> "RolledGraph":
    """The rolled graph of ``plan`` with the weights of ``model``.

    Every weight is read once per consumer: the slice norms are computed in one call and
    shared, without copies, by all the producers whose units reach the same input slots
    (the branches of a residual sum share one block).
    """
    sizes = [layer.units for layer in plan.layers]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    groups = []
    for c in plan.consumers:
        layer = plan.layers[c]
        rules = plan.rules[c]
        if not rules:
            continue
        w = _np(plan.weight(model, layer))
        out = w.shape[0]
        w2 = w.reshape(out, w.shape[1], -1) if layer.kind == "conv" else w.reshape(out, -1, 1)
        cache: dict[str, np.ndarray] = {}

        def norms() -> np.ndarray:  # (out, cig) slice norms, float64
            if "n" not in cache:
                cache["n"] = _sq_norms(w2)
            return cache["n"]

        def sq() -> np.ndarray:  # (out, cig) squared slice norms, float64
            if "sq" not in cache:
                cache["sq"] = np.einsum("...k,...k->...", w2.astype(np.float64), w2.astype(np.float64))
            return cache["sq"]

        for producers, rule in rules:
            n = rule.n_units
            if rule.kind == "slice":
                lo, hi = rule.offset, rule.offset + n * rule.g
                if rule.g == 1:
                    b = norms()[:, lo:hi]
                elif layer.kind == "linear":
                    b = _sq_norms(w[:, lo:hi].reshape(out, n, rule.g))
                else:
                    b = np.sqrt(sq()[:, lo:hi].reshape(out, n, rule.g).sum(axis=2))
            elif rule.kind == "gather":
                b = norms()[:, rule.slots]
            else:
                vals = np.sqrt(rule.G @ sq().ravel())
                b = sp.csr_matrix((vals, rule.cols.astype(np.int32), rule.indptr), shape=(out, n))
                b.has_sorted_indices = True
            groups.append((c, producers, b))
    names = [(layer.name, slice(int(starts[i]), int(starts[i + 1]))) for i, layer in enumerate(plan.layers)]
    return RolledGraph(names, groups, int(starts[-1]))


def _size(b) -> int:
    return int(b.nnz) if sp.issparse(b) else int(b.size)


@dataclass
class RolledGraph:
    """The rolled graph of one network: a k-partite graph stored as its weight blocks.

    Attributes
    ----------
    layers
        ``[(name, slice)]``: the node ids of every layer, in forward order; the first is
        ``("input", slice(0, in_channels))``.
    groups
        ``[(consumer, producers, B)]``: ``B[l, k]`` is the weight of the edge between unit
        ``l`` of layer ``consumer`` and unit ``k`` of *each* layer in ``producers`` (indices
        into ``layers``; several producers share one block at a residual sum). ``B`` is a
        dense array, or a CSR matrix holding only the real edges (grouped convolutions,
        partial channel maps); a stored zero is an edge of weight zero.
    n
        number of nodes.
    """

    layers: list[tuple[str, slice]]
    groups: list[tuple[int, tuple[int, ...], object]]
    n: int

    @property
    def n_nodes(self) -> int:
        return self.n

    @property
    def blocks(self) -> list[tuple[int, int, object]]:
        """``[(consumer, producer, B)]``, one per pair of layers."""
        return [(c, p, b) for c, producers, b in self.groups for p in producers]

    @property
    def n_edges(self) -> int:
        """Number of edges: (unit, unit) pairs joined by a weight, zero weights included."""
        return int(sum(_size(b) for _, _, b in self.blocks))

    @property
    def nbytes(self) -> int:
        """Bytes of :attr:`adjacency` (float64 data, int32 indices and index pointer)."""
        return csr_bytes(self.n, 2 * self.n_edges)

    def _slice(self, i: int) -> slice:
        return self.layers[i][1]

    @cached_property
    def adjacency(self) -> sp.csr_matrix:
        """Symmetric CSR adjacency (float64, non-negative), with sorted indices.

        With dense blocks only, each row of a layer lists its neighbours layer by layer, so
        the matrix is assembled without sorting (every block copied once, and once
        transposed); sparse blocks go through a COO assembly that keeps stored zeros.
        """
        blocks = self.blocks
        if any(sp.issparse(b) for _, _, b in blocks):
            return self._adjacency_coo(blocks)
        pieces: list[list[tuple[int, np.ndarray]]] = [[] for _ in self.layers]
        for c, p, b in blocks:
            pieces[c].append((p, b))
            pieces[p].append((c, b.T))
        nnz = 2 * sum(b.size for _, _, b in blocks)
        idx_dtype = np.int32 if max(nnz, self.n) < 2**31 else np.int64
        data = np.empty(nnz)
        indices = np.empty(nnz, dtype=idx_dtype)
        indptr = np.zeros(self.n + 1, dtype=idx_dtype)
        pos = 0
        for i, plist in enumerate(pieces):
            rows = self._slice(i)
            n_rows = rows.stop - rows.start
            plist.sort(key=lambda t: t[0])
            width = sum(b.shape[1] for _, b in plist)
            indptr[rows.start + 1:rows.stop + 1] = pos + width * np.arange(1, n_rows + 1)
            if width == 0:
                indptr[rows.start + 1:rows.stop + 1] = pos
                continue
            view = data[pos:pos + n_rows * width].reshape(n_rows, width)
            cols = np.empty(width, dtype=idx_dtype)
            col = 0
            for j, b in plist:
                view[:, col:col + b.shape[1]] = b
                s = self._slice(j)
                cols[col:col + b.shape[1]] = np.arange(s.start, s.stop)
                col += b.shape[1]
            indices[pos:pos + n_rows * width].reshape(n_rows, width)[:] = cols
            pos += n_rows * width
        a = sp.csr_matrix((data, indices, indptr), shape=(self.n, self.n))
        a.has_sorted_indices = True
        return a

    def _adjacency_coo(self, blocks) -> sp.csr_matrix:
        rows, cols, vals = [], [], []
        for c, p, b in blocks:
            coo = sp.coo_matrix(b)
            r = coo.row.astype(np.int64) + self._slice(c).start
            k = coo.col.astype(np.int64) + self._slice(p).start
            rows += [r, k]
            cols += [k, r]
            vals += [coo.data, coo.data]
        if not rows:
            return sp.csr_matrix((self.n, self.n))
        a = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(self.n, self.n))
        a.sum_duplicates()
        if a.indices.dtype != np.int32 and max(a.nnz, self.n) < 2**31:
            a.indices = a.indices.astype(np.int32)
            a.indptr = a.indptr.astype(np.int32)
        return a

    @cached_property
    def operator(self) -> LinearOperator:
        """The adjacency as a matrix-free ``LinearOperator`` on the blocks.

        ``y = A x`` adds, for every group, ``B @ (sum of the producers' x)`` to the consumer
        and ``B.T @ x_consumer`` to every producer: each block is read twice per product,
        however many producers share it: :func:`_product`, the one implementation of the
        rolled product, on one vector or the columns of a matrix.
        """
        sl = [self._slice(i) for i in range(len(self.layers))]
        groups = [(sl[c], [sl[p] for p in producers], b, b.T.tocsr() if sp.issparse(b) else b.T)
                  for c, producers, b in self.groups]
        n = self.n

        def matmat(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float64)
            batch = x.reshape(n, -1).T  # one row per vector
            return _product(groups, batch, n, lambda b, v: (b @ v.T).T).T.reshape(x.shape)

        return LinearOperator((n, n), matvec=matmat, rmatvec=matmat, matmat=matmat, dtype=np.float64)

    def layer_of(self) -> np.ndarray:
        """Layer index of every node (0 for the input channels)."""
        out = np.empty(self.n, dtype=int)
        for i, (_, s) in enumerate(self.layers):
            out[s] = i
        return out

    def to_networkx(self):
        """A weighted ``networkx.Graph``: nodes ``0..n-1`` with attributes ``layer`` (name)
        and ``unit`` (index in the layer), edge attribute ``weight``."""
        import networkx as nx

        g = nx.Graph()
        for name, s in self.layers:
            g.add_nodes_from((i, {"layer": name, "unit": i - s.start}) for i in range(s.start, s.stop))
        coo = sp.triu(self.adjacency, k=1, format="coo")
        g.add_weighted_edges_from(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist()))
        return g


def _product(groups, x: np.ndarray, n: int, mul) -> np.ndarray:
    """``A x`` for a batch ``x`` (batch, n) from blocks: ``mul(B, v)`` maps (batch, k) -> (batch, l)."""
    y = np.zeros((x.shape[0], n))
    for rs, ps, b, bt in groups:
        xs = x[:, ps[0]] if len(ps) == 1 else sum(x[:, p] for p in ps)
        y[:, rs] += mul(b, xs)
        back = mul(bt, x[:, rs])
        for p in ps:
            y[:, p] += back
    return y


def stack_rolled(graphs: Sequence[RolledGraph]):
    """Products with a batch of rolled graphs of one architecture (e.g. a run's snapshots).

    Returns a function mapping ``X`` of shape ``(len(graphs), n)`` to the rows
    ``A_s @ X[s]``: batched matrix products on the stacked dense blocks, one block-diagonal
    sparse product per sparse block; pass it to
    :func:`paperlib.graph.centrality.eigenvector_centrality_batch`.
    """
    g0 = graphs[0]
    if any(len(g.groups) != len(g0.groups) or g.n != g0.n for g in graphs):
        raise ValueError("the graphs do not share one architecture")
    sl = [g0._slice(i) for i in range(len(g0.layers))]
    n, nb = g0.n, len(graphs)
    dense, sparse = [], []
    for i, (c, producers, b0) in enumerate(g0.groups):
        bs = [g.groups[i][2] for g in graphs]
        if sp.issparse(b0):
            bd = sp.block_diag(bs, format="csr")
            sparse.append((sl[c], [sl[p] for p in producers], bd, bd.T.tocsr()))
        else:
            st = np.stack(bs)
            dense.append((sl[c], [sl[p] for p in producers], st, st.transpose(0, 2, 1)))

    def apply(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(nb, n)
        y = _product(dense, x, n, lambda b, v: np.matmul(b, v[:, :, None])[:, :, 0])
        if sparse:
            y += _product(sparse, x, n, lambda b, v: (b @ v.ravel()).reshape(nb, -1))
        return y

    return apply

