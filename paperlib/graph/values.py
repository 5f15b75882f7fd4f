"""The values the channel-flow walker computes: incidences, flows and the weighted layers they feed.

An :class:`Incidence` is the 0/1 matrix ``M`` with ``M[e, q] = 1`` when element ``q`` of a
producer's output reaches element ``e`` of a value; a :class:`Flow` maps every producer that
reaches a value to its incidence; a :class:`Layer` is a weighted layer (a node set of the graph)
with the incidences of its input. :mod:`paperlib.graph.flow` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
import scipy.sparse as sp
import torch.nn as nn

__all__ = ["Incidence", "Flow", "Layer", "ConvSpec", "UnsupportedGraphError", "InputShapeError", "SUPPORTED"]

SUPPORTED = (
    "Supported: nn.Conv2d, nn.Linear, and F.conv2d/F.linear with a parameter as weight (the weighted "
    "layers); elementwise operations (activations, normalisation, dropout, + - * /, gating); 2-D "
    "max/average/adaptive pooling; reductions over axes (mean, sum, max, ...); data movement "
    "(view/reshape/flatten, transpose/permute, indexing, chunk/split, cat/stack, pad, channel shuffle, "
    "nearest upsampling).")


class UnsupportedGraphError(NotImplementedError):
    """A construct the graph walker cannot follow exactly."""


class InputShapeError(ValueError):
    """The network does not run on the input shape given."""


class Incidence:
    """A 0/1 matrix ``M`` (value elements x producer elements), stored in the cheapest form.

    * identity (``idx is None and mat is None``): the value is the producer's output;
    * gather (``idx``): every value element is a copy of producer element ``idx[e]``, or of
      nothing (``-1``);
    * general (``mat``, CSR with ones): several producer elements feed one value element.
    """

    __slots__ = ("n_rows", "n_cols", "idx", "mat")

    def __init__(self, n_rows: int, n_cols: int, idx: np.ndarray | None = None, mat: sp.csr_matrix | None = None):
        self.n_rows, self.n_cols, self.idx, self.mat = int(n_rows), int(n_cols), idx, mat

    @classmethod
    def identity(cls, n: int) -> "Incidence":
        return cls(n, n)

    @property
    def is_identity(self) -> bool:
        return self.idx is None and self.mat is None

    @property
    def empty(self) -> bool:
        if self.idx is not None:
            return not bool((self.idx >= 0).any())
        if self.mat is not None:
            return self.mat.nnz == 0
        return self.n_rows == 0

    def to_csr(self) -> sp.csr_matrix:
        if self.mat is not None:
            return self.mat
        idx = np.arange(self.n_rows) if self.idx is None else self.idx
        ok = idx >= 0
        return sp.csr_matrix((np.ones(int(ok.sum())), (np.flatnonzero(ok), idx[ok])), shape=(self.n_rows, self.n_cols))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(value element, producer element) of every one of ``M``."""
        if self.idx is None and self.mat is None:
            r = np.arange(self.n_rows)
            return r, r
        if self.idx is not None:
            rows = np.flatnonzero(self.idx >= 0)
            return rows, self.idx[rows]
        coo = self.mat.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64)

    def gather(self, j: np.ndarray) -> "Incidence":
        """Rows ``j`` of ``M`` (a row of zeros where ``j < 0``): a data movement."""
        j = np.asarray(j, dtype=np.int64)
        n = len(j)
        if self.is_identity:
            if n == self.n_rows and np.array_equal(j, np.arange(n)):
                return self
            return Incidence(n, self.n_cols, idx=j)
        if self.idx is not None:
            safe = np.where(j >= 0, j, 0)
            return Incidence(n, self.n_cols, idx=np.where(j >= 0, self.idx[safe], -1))
        ok = j >= 0
        sel = sp.csr_matrix((np.ones(int(ok.sum())), (np.flatnonzero(ok), j[ok])), shape=(n, self.n_rows))
        return Incidence(n, self.n_cols, mat=_binary(sel @ self.mat))

    def aggregate(self, P: sp.csr_matrix) -> "Incidence":
        """``bin(P @ M)`` for a 0/1 aggregation ``P`` (new elements x value elements)."""
        m = P if self.is_identity else _binary(P @ self.to_csr())
        return _compact(Incidence(P.shape[0], self.n_cols, mat=_binary(m.tocsr())))

    def union(self, other: "Incidence") -> "Incidence":
        """Elementwise OR (same shape)."""
        if other is self or (self.is_identity and other.is_identity):
            return self
        if self.idx is not None and other.idx is not None:
            if np.array_equal(self.idx, other.idx):
                return self
            if not np.any((self.idx >= 0) & (other.idx >= 0)):
                return Incidence(self.n_rows, self.n_cols, idx=np.maximum(self.idx, other.idx))
        return _compact(Incidence(self.n_rows, self.n_cols, mat=_binary(self.to_csr() + other.to_csr())))


def _binary(m: sp.spmatrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


def _compact(inc: Incidence) -> Incidence:
    """The gather form when every row of a general incidence has at most one one."""
    m = inc.mat
    if m is not None and np.all(np.diff(m.indptr) <= 1):
        idx = np.full(inc.n_rows, -1, dtype=np.int64)
        rows = np.flatnonzero(np.diff(m.indptr))
        idx[rows] = m.indices[m.indptr[rows]]
        return Incidence(inc.n_rows, inc.n_cols, idx=idx)
    return inc


@dataclass
class Flow:
    """Which producers feed a tensor value: ``terms[p]`` is the incidence of producer ``p``.

    ``shape`` is the value's full shape (batch axis of one included). ``poison`` says why the
    value cannot be followed (then ``terms`` is empty)."""

    shape: tuple[int, ...]
    terms: dict[int, Incidence] = field(default_factory=dict)
    poison: str | None = None

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class ConvSpec:
    """Geometry of a 2-D convolution."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    groups: int
    padding_mode: str = "zeros"


@dataclass
class Layer:
    """A node set: the network input, or one weighted layer (convolution or linear).

    Attributes
    ----------
    name
        ``"input"``, or the qualified name of the module (of the weight parameter, without a
        trailing ``.weight``, for ``F.conv2d`` / ``F.linear``).
    kind
        ``"input"``, ``"conv"`` or ``"linear"``.
    param
        qualified name of the weight parameter (``None`` for the input).
    out_shape, in_shape
        shapes of its output and input, without the batch axis.
    inputs
        ``{producer layer index: Incidence}`` of the layer's input on each producer's output.
    """

    name: str
    kind: str
    out_shape: tuple[int, ...]
    param: str | None = None
    in_shape: tuple[int, ...] = ()
    conv: ConvSpec | None = None
    inputs: dict[int, Incidence] = field(default_factory=dict)
    module_type: str = ""
    module: nn.Module | None = None

    @property
    def units(self) -> int:
        """Rolled nodes: output channels of a convolution, output features of a linear layer
        (its last axis), the first axis of the input."""
        return int(self.out_shape[-1] if self.kind == "linear" else self.out_shape[0])

    @property
    def positions(self) -> int:
        """Unrolled nodes: every element of the output."""
        return int(np.prod(self.out_shape))

    def unit_of(self, q: np.ndarray) -> np.ndarray:
        """The unit (rolled node) of output elements ``q``."""
        if self.kind == "linear":
            return q % self.out_shape[-1]
        return q // int(np.prod(self.out_shape[1:]))

    @property
    def n_slots(self) -> int:
        """Input slots read by one weight slice: input channels (conv) or input features (linear)."""
        return int(self.in_shape[0] if self.kind == "conv" else self.in_shape[-1])

    def slot_of(self, e: np.ndarray) -> np.ndarray:
        """The input slot of input elements ``e``: channel (conv) or feature (linear)."""
        if self.kind == "conv":
            return e // int(np.prod(self.in_shape[1:]))
        return e % self.in_shape[-1]

    @property
    def groups(self) -> int:
        return self.conv.groups if self.conv is not None else 1


def _window_matrix(c: int, sh: np.ndarray, sw: np.ndarray) -> sp.csr_matrix:
    """``kron(I_c, kron(sh, sw))`` for 0/1 window memberships, built with index arithmetic."""
    (ho, h), (wo, w) = sh.shape, sw.shape
    i, hh = np.nonzero(sh)
    j, ww = np.nonzero(sw)
    rows = (i[:, None] * wo + j[None, :]).ravel()
    cols = (hh[:, None] * w + ww[None, :]).ravel()
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    ch = np.arange(c)[:, None]
    r = (ch * (ho * wo) + rows[None, :]).ravel()
    k = (ch * (h * w) + cols[None, :]).ravel()
    indptr = np.searchsorted(r, np.arange(c * ho * wo + 1))
    return sp.csr_matrix((np.ones(len(k)), k, indptr), shape=(c * ho * wo, c * h * w))


def _merge(into: dict[int, Incidence], terms: dict[int, Incidence]) -> None:
    for p, m in terms.items():
        into[p] = into[p].union(m) if p in into else m
