"""The unrolled graph of Rieck et al. (2019): one node per element of every map.

Nodes: every element (channel x position, or feature) of the input and of the output of
every weighted layer, ordered layer by layer, in the flat order of the tensor. Edges: a
weighted layer multiplies each element ``e`` of its input by weights ``w[o, e]``; the
element ``e`` is fed by producer elements ``q`` (the incidence ``M[e, q]`` of the channel
flow: copies, pooling windows, residual sums, concatenations, padding). The edge between
output element ``o`` and producer element ``q`` weighs ``sum_e |w[o, e]| M[e, q]``: one
multiplication per convolution tap for a plain chain; pooling folds its windows into the
next layer (overlapping windows add their weights); at a residual sum every producer of the
sum is joined.

The explicit matrix (:meth:`UnrolledGraph.materialize`) and the matrix-free operator
(:attr:`UnrolledGraph.operator`, :meth:`UnrolledGraph.apply`: convolutions with ``|K|`` and
their transposes, the incidences as gathers or sparse products) apply the same incidences
and agree to rounding.

References
----------
Rieck, B. et al. (2019). Neural Persistence: A Complexity Measure for Deep Neural Networks
Using Algebraic Topology. ICLR.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator
from threadpoolctl import threadpool_limits

from .. import blas
from .values import Incidence, Layer, UnsupportedGraphError
from .rolled import csr_bytes

__all__ = ["UnrolledGraph", "DEFAULT_MAX_BYTES"]

#: memory cap of :meth:`UnrolledGraph.materialize` (bytes of the CSR matrix)
DEFAULT_MAX_BYTES: int = 2 * 2**30


def conv_geometry(layer: Layer):
    """(kernel, stride, padding, dilation) of a convolution layer, padding made explicit."""
    spec = layer.conv
    k, s, d = spec.kernel, spec.stride, spec.dilation
    if spec.padding_mode != "zeros":
        raise UnsupportedGraphError(f"layer '{layer.name}': padding_mode={spec.padding_mode!r} adds edges the "
                                    "unrolled graph does not model; only zero padding is supported")
    if isinstance(spec.padding, str):
        if spec.padding == "valid":
            p = (0, 0)
        else:  # "same"
            total = [d[i] * (k[i] - 1) for i in range(2)]
            if any(t % 2 for t in total):
                raise UnsupportedGraphError(f"layer '{layer.name}': padding='same' with asymmetric padding")
            p = (total[0] // 2, total[1] // 2)
    else:
        p = spec.padding
    return k, s, p, d


def _tap_pattern(n_in: int, n_out: int, k: int, s: int, p: int, d: int):
    """Valid (tap, out, in) triples along one axis of a convolution."""
    a, o = np.meshgrid(np.arange(k), np.arange(n_out), indexing="ij")
    i = o * s - p + a * d
    ok = (i >= 0) & (i < n_in)
    return a[ok], o[ok], i[ok]


def _receptive(layer: Layer) -> tuple[sp.csr_matrix, int]:
    """(R, units per row): row r of R marks the input elements read by each of ``units`` outputs."""
    if layer.kind == "linear":
        f = layer.in_shape[-1]
        npos = int(np.prod(layer.in_shape)) // f
        return sp.kron(sp.identity(npos, format="csr"), sp.csr_matrix(np.ones((1, f))), format="csr"), layer.units
    k, s, p, d = conv_geometry(layer)
    cin, h, w = layer.in_shape
    _, ho, wo = layer.out_shape
    g = layer.groups
    _, oh, ih = _tap_pattern(h, ho, k[0], s[0], p[0], d[0])
    _, ow, iw = _tap_pattern(w, wo, k[1], s[1], p[1], d[1])
    ph = sp.csr_matrix((np.ones(len(oh)), (oh, ih)), shape=(ho, h))
    pw = sp.csr_matrix((np.ones(len(ow)), (ow, iw)), shape=(wo, w))
    ph.data[:] = 1
    pw.data[:] = 1
    chan = sp.kron(sp.identity(g, format="csr"), sp.csr_matrix(np.ones((1, cin // g))), format="csr")
    return sp.kron(chan, sp.kron(ph, pw, format="csr"), format="csr"), layer.units // g


def _unrolled_layer(layer: Layer, w: np.ndarray) -> sp.coo_matrix:
    """One layer's multiplications as a (output elements x input elements) COO matrix."""
    n_out, n_in = int(np.prod(layer.out_shape)), int(np.prod(layer.in_shape))
    if layer.kind == "linear":
        o_f, i_f = w.shape
        npos = n_in // i_f
        pos = np.arange(npos)[:, None, None]
        o = (pos * o_f + np.arange(o_f)[None, :, None]) + 0 * np.arange(i_f)[None, None, :]
        i = (pos * i_f + np.arange(i_f)[None, None, :]) + 0 * np.arange(o_f)[None, :, None]
        vals = np.broadcast_to(w[None], o.shape)
        return sp.coo_matrix((vals.ravel(), (o.ravel(), i.ravel())), shape=(n_out, n_in))
    k, s, p, d = conv_geometry(layer)
    co, cig = w.shape[:2]
    g = layer.groups
    cin, h, wd = layer.in_shape
    _, ho, wo = layer.out_shape
    ah, oh, ih = _tap_pattern(h, ho, k[0], s[0], p[0], d[0])
    aw, ow, iw = _tap_pattern(wd, wo, k[1], s[1], p[1], d[1])
    o = np.arange(co)[:, None, None, None]
    i = np.arange(cig)[None, :, None, None]
    in_ch = (o // (co // g)) * cig + i
    rows = o * (ho * wo) + (oh[:, None] * wo + ow[None, :])[None, None]
    cols = in_ch * (h * wd) + (ih[:, None] * wd + iw[None, :])[None, None]
    vals = w[:, :, ah[:, None], aw[None, :]]
    rows = np.broadcast_to(rows, vals.shape).ravel()
    cols = np.broadcast_to(cols, vals.shape).ravel()
    return sp.coo_matrix((vals.ravel(), (rows, cols)), shape=(n_out, n_in))


def _join(block: sp.coo_matrix, inc: Incidence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, producer columns, values) of ``block @ M``, one entry per product (unsummed)."""
    r, e, v = block.row.astype(np.int64), block.col.astype(np.int64), block.data
    if inc.is_identity:
        return r, e, v
    if inc.idx is not None:
        q = inc.idx[e]
        ok = q >= 0
        return r[ok], q[ok], v[ok]
    m = inc.mat
    counts = np.diff(m.indptr)[e]
    starts = np.repeat(m.indptr[e] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    q = m.indices[starts + np.arange(int(counts.sum()))]
    return np.repeat(r, counts), q.astype(np.int64), np.repeat(v, counts)


class UnrolledGraph:
    """The unrolled graph: one node per element of the input and of every layer's output.

    Holds ``|w|`` of every layer and the plan's incidences; :attr:`operator` multiplies by
    the adjacency without storing it, :meth:`materialize` builds the explicit sparse matrix
    when it fits in memory.

    Attributes
    ----------
    layers
        ``[(name, slice)]`` of node ids, the input first.
    shapes
        output shape of every layer (without batch).
    """

    def __init__(self, plan, weights: list[torch.Tensor | None]):
        self.plan = plan
        self.weights = weights
        sizes = [layer.positions for layer in plan.layers]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.layers = [(layer.name, slice(int(starts[i]), int(starts[i + 1])))
                       for i, layer in enumerate(plan.layers)]
        self.shapes = [layer.out_shape for layer in plan.layers]
        self.n = int(starts[-1])
        for c in plan.consumers:  # refuse what the unrolled graph does not model, up front
            if plan.layers[c].kind == "conv":
                conv_geometry(plan.layers[c])
        #: torch threads used by the products (small convolutions run fastest on one; None:
        #: keep torch's setting)
        self.threads: int | None = 1

    @property
    def n_nodes(self) -> int:
        return self.n

    @cached_property
    def n_edges(self) -> int:
        """Edges of the explicit graph, counted from the sparsity patterns without building it:
        ``units per row x nnz(R @ M)`` for the receptive pattern ``R`` of every layer."""
        total = 0
        for c in self.plan.consumers:
            layer = self.plan.layers[c]
            if not layer.inputs:
                continue
            R, per = _receptive(layer)
            for inc in layer.inputs.values():
                total += per * (R.nnz if inc.is_identity else int((R @ inc.to_csr()).nnz))
        return int(total)

    @property
    def nbytes(self) -> int:
        """Bytes the explicit CSR matrix needs (float64 data, int32/int64 indices)."""
        return csr_bytes(self.n, 2 * self.n_edges)

    @property
    def batch(self) -> int:
        """Number of graphs held (snapshots sharing the architecture)."""
        return int(self.weights[1].shape[0]) if len(self.weights) > 1 else 1

    # -- matrix-free
    @cached_property
    def _routes(self):
        """Per consumer: [(producer slice, kind, forward data, backward data)]."""
        out = {}
        for c in self.plan.consumers:
            layer = self.plan.layers[c]
            n_in = int(np.prod(layer.in_shape))
            rs = []
            for p, inc in layer.inputs.items():
                sl = self.layers[p][1]
                if inc.is_identity:
                    rs.append((sl, "id", None, None))
                elif inc.idx is not None:
                    rows = np.flatnonzero(inc.idx >= 0)
                    rs.append((sl, "idx", torch.from_numpy(rows), torch.from_numpy(inc.idx[rows])))
                else:
                    rs.append((sl, "mat", inc.mat, inc.mat.T.tocsr()))
            out[c] = (n_in, rs)
        return out

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``A_s @ x_s`` for every graph ``s`` of the batch: ``x`` of shape ``(batch, n)``.

        For every layer, the forward product (``conv2d`` with ``|K|``, or ``|W| @``) goes from
        the producers' elements (through the incidences) to the layer's, and the transposed
        product (``conv_transpose2d``, ``|W|.T @``) back; the graphs of a batch run together
        as the groups of one grouped convolution. Runs on :attr:`threads` threads; every product
        goes through :mod:`paperlib.blas` (numpy's pinned OpenBLAS), so the bits do not depend on
        the CPU's vendor.
        """
        plan, weights, layers = self.plan, self.weights, self.layers
        x_np = np.asarray(x, dtype=np.float64)
        squeeze = x_np.ndim == 1
        x_np = x_np.reshape(self.batch, self.n)
        dtype = weights[1].dtype if len(weights) > 1 else torch.float64
        prev = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with threadpool_limits(limits=self.threads or None, user_api="blas"):
                x_t = torch.from_numpy(np.ascontiguousarray(x_np)).to(dtype)
                y = torch.zeros_like(x_t)
                nb = self.batch
                routes = self._routes
                for c in plan.consumers:
                    layer = plan.layers[c]
                    w = weights[c]
                    sc = layers[c][1]
                    n_in, rs = routes[c]
                    inp = x_t.new_zeros((nb, n_in)) if rs else None
                    for sl, kind, a, b in rs:
                        xp = x_t[:, sl]
                        if kind == "id":
                            inp += xp
                        elif kind == "idx":
                            inp[:, a] += xp[:, b]
                        else:
                            inp += torch.from_numpy(np.asarray(a @ xp.numpy().T).T).to(dtype)
                    xc = x_t[:, sc]
                    if layer.kind == "conv":
                        k, st, p, d = conv_geometry(layer)
                        g = layer.groups * nb
                        wf = w.reshape(-1, *w.shape[2:])
                        cin, h, wd = layer.in_shape
                        co, ho, wo = layer.out_shape
                        if inp is not None:
                            y[:, sc] += blas.conv2d(inp.reshape(1, nb * cin, h, wd), wf, None, st, p, d, g).reshape(nb, -1)
                        back = blas.conv2d_input_grad(xc.reshape(1, nb * co, ho, wo), wf, (1, nb * cin, h, wd),
                                                      st, p, d, g).reshape(nb, -1)
                    else:
                        fo, fi = w.shape[1], w.shape[2]
                        if inp is not None:
                            y[:, sc] += blas.matmul(inp.reshape(nb, -1, fi), w.transpose(1, 2)).reshape(nb, -1)
                        back = blas.matmul(xc.reshape(nb, -1, fo), w).reshape(nb, -1)
                    for sl, kind, a, b in rs:
                        if kind == "id":
                            y[:, sl] += back
                        elif kind == "idx":
                            y[:, sl] = y[:, sl].index_add(1, b, back[:, a])
                        else:
                            y[:, sl] += torch.from_numpy(np.asarray(b @ back.numpy().T).T).to(dtype)
        finally:
            torch.set_num_threads(prev)
        out = y.to(torch.float64).numpy()
        return out[0] if squeeze and self.batch == 1 else out

    @cached_property
    def operator(self) -> LinearOperator:
        """The symmetric adjacency as a ``LinearOperator`` (a batch of one graph only)."""
        if self.batch != 1:
            raise ValueError(f"this UnrolledGraph holds {self.batch} graphs; use .apply for the batch")

        def matmat(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x)
            if x.ndim == 1:
                return self.apply(x[None])[0]
            return np.stack([self.apply(x[None, :, j])[0] for j in range(x.shape[1])], axis=1)

        return LinearOperator((self.n, self.n), matvec=lambda v: matmat(np.ravel(v)),
                              rmatvec=lambda v: matmat(np.ravel(v)), matmat=matmat, dtype=np.float64)

    # -- explicit
    def materialize(self, max_bytes: int | None = None) -> sp.csr_matrix:
        """The explicit symmetric CSR adjacency (float64), built with vectorised index arithmetic.

        Parameters
        ----------
        max_bytes
            refuse to build a matrix whose CSR arrays need more bytes than this (default
            :data:`DEFAULT_MAX_BYTES`, 2 GiB; building needs about three times as much
            transiently).

        Raises
        ------
        MemoryError
            naming the number of edges and the bytes the matrix would need.
        """
        cap = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        if self.nbytes > cap:
            raise MemoryError(
                f"the explicit unrolled graph has {self.n_edges:,} edges ({self.n:,} nodes) and needs "
                f"{self.nbytes / 2**30:.2f} GiB as a CSR matrix, above the cap of {cap / 2**30:.2f} GiB; "
                "use .operator (matrix-free) instead, or raise max_bytes")
        if self.batch != 1:
            raise ValueError(f"this UnrolledGraph holds {self.batch} graphs; materialize one at a time")
        rows, cols, vals = [], [], []
        for c in self.plan.consumers:
            layer = self.plan.layers[c]
            if not layer.inputs:
                continue
            block = _unrolled_layer(layer, self.weights[c][0].to(torch.float64).numpy())
            r0 = self.layers[c][1].start
            for p, inc in layer.inputs.items():
                r, q, v = _join(block, inc)
                rows.append(r + r0)
                cols.append(q + self.layers[p][1].start)
                vals.append(v)
        if rows:
            r, cc, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        else:
            r = cc = np.zeros(0, dtype=np.int64)
            v = np.zeros(0)
        a = sp.coo_matrix((np.concatenate([v, v]), (np.concatenate([r, cc]), np.concatenate([cc, r]))),
                          shape=(self.n, self.n)).tocsr()
        a.sum_duplicates()
        return a

