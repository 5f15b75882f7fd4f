"""The traced plan of an architecture: its layers, what feeds them, and the edge rules.

A :class:`GraphPlan` depends on the architecture only. :meth:`GraphPlan.rolled` and
:meth:`GraphPlan.unrolled` read the weights of any model of that architecture (e.g. every
snapshot of a training run) and build the graphs from the same incidences;
:func:`rolled_graph` and :func:`unrolled_graph` do both steps for one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from .flow import FlowWalker
from .values import Incidence, InputShapeError, Layer
from .rolled import RolledGraph, build_rolled
from .tracing import infer_input_shape, symbolic_trace
from .unrolled import UnrolledGraph

__all__ = ["GraphPlan", "EdgeRule", "rolled_graph", "unrolled_graph"]

_DENSE_RELATION_MAX = 2**26  # slot x unit pairs below which the relation is built as a boolean matrix


@dataclass(frozen=True)
class EdgeRule:
    """How a consumer's weights become the rolled block towards one producer.

    ``kind``:

    * ``"slice"``: unit ``u`` of the producer feeds the ``g`` consecutive slots
      ``offset + u*g .. offset + (u+1)*g - 1`` of a dense consumer (identity, concatenation,
      channel padding, flatten): the block is a slice of the slice norms, without copies when
      ``g == 1``;
    * ``"gather"``: unit ``u`` feeds the one slot ``slots[u]`` of a dense consumer
      (a channel permutation or shuffle);
    * ``"general"``: any other relation, or a grouped convolution: a sparse block on
      ``(rows, cols)`` whose values are ``sqrt(G @ sq)``, ``sq`` the squared weight slices.
    """

    kind: str
    n_units: int
    offset: int = 0
    g: int = 1
    slots: np.ndarray | None = None
    rows: np.ndarray | None = None  # general: consumer unit of every edge
    cols: np.ndarray | None = None  # general: producer unit of every edge
    G: sp.csr_matrix | None = None  # general: edges x weight slices (0/1)
    indptr: np.ndarray | None = None

    def key(self) -> tuple:
        if self.kind == "slice":
            return ("slice", self.n_units, self.offset, self.g)
        if self.kind == "gather":
            return ("gather", self.slots.tobytes())
        return ("general", id(self))


def _relation(consumer: Layer, producer: Layer, inc: Incidence) -> tuple[np.ndarray, np.ndarray]:
    """Unique (slot, unit) pairs, sorted by unit then slot: producer unit ``u`` feeds slot ``s``."""
    rows, cols = inc.pairs()
    s, u = consumer.slot_of(rows), producer.unit_of(cols)
    ns, nu = consumer.n_slots, producer.units
    if ns * nu <= _DENSE_RELATION_MAX:
        rel = np.zeros((nu, ns), dtype=bool)
        rel[u, s] = True
        uu, ss = np.nonzero(rel)
        return ss, uu
    key = np.unique(u.astype(np.int64) * ns + s)
    return key % ns, key // ns


def edge_rule(consumer: Layer, producer: Layer, inc: Incidence) -> EdgeRule:
    """The :class:`EdgeRule` of ``consumer`` towards ``producer``, read from the incidence."""
    s, u = _relation(consumer, producer, inc)
    nu = producer.units
    groups = consumer.groups
    counts = np.bincount(u, minlength=nu)
    if groups == 1 and len(s) and np.all(counts == counts[0]):
        g = int(counts[0])
        by_unit = s.reshape(nu, g)
        off = int(by_unit[0, 0])
        if np.array_equal(by_unit, off + np.arange(nu)[:, None] * g + np.arange(g)[None, :]):
            return EdgeRule("slice", nu, offset=off, g=g)
        if g == 1:
            return EdgeRule("gather", nu, slots=by_unit[:, 0].copy())
    # general: edge (l, u) for every consumer unit l of the group of a slot that u feeds
    out = consumer.units
    cog, cig = out // groups, consumer.n_slots // groups
    grp = s // cig
    L = grp[:, None] * cog + np.arange(cog)[None, :]          # (pairs, cog) consumer units
    U = np.broadcast_to(u[:, None], L.shape)
    wcol = L * cig + (s % cig)[:, None]                      # index into the (out, cig) slice array
    keys = (L.astype(np.int64) * nu + U).ravel()
    uniq, inv = np.unique(keys, return_inverse=True)
    G = sp.csr_matrix((np.ones(len(keys)), (inv, wcol.ravel())), shape=(len(uniq), out * cig))
    rows, cols = uniq // nu, uniq % nu
    indptr = np.searchsorted(rows, np.arange(out + 1)).astype(np.int64)
    return EdgeRule("general", nu, rows=rows, cols=cols, G=G, indptr=indptr)


class GraphPlan:
    """The data flow of a network, traced once: which layer reads which, through what.

    Parameters
    ----------
    model
        a network traceable by ``torch.fx``; its weighted layers are ``nn.Conv2d``,
        ``nn.Linear`` or ``F.conv2d``/``F.linear`` with parameter weights (see
        :mod:`paperlib.graph.flow` for the operations followed between them). Traced in eval
        mode, so the graph does not depend on the mode.
    input_shape
        one input without the batch axis; ``None`` guesses it (see
        :func:`paperlib.graph.infer_input_shape`).

    Attributes
    ----------
    layers
        :class:`~paperlib.graph.flow.Layer` list: the input, then every weighted layer in the
        order the data reaches it.
    input_shape
        the input shape used.

    Raises
    ------
    UnsupportedGraphError
        (a ``NotImplementedError``) naming the module, the operation and the construct the
        walker cannot follow.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None):
        gm = symbolic_trace(model)
        name = type(model).__name__
        candidates = [tuple(int(s) for s in input_shape)] if input_shape is not None else infer_input_shape(model)
        errors = []
        for shape in candidates:
            try:
                self.layers: list[Layer] = FlowWalker(gm, shape, name).run()
                break
            except InputShapeError as exc:  # wrong input size: try the next candidate
                errors.append(f"{shape}: {exc}")
        else:
            raise InputShapeError(f"{name} does not run on the input shape(s) tried; pass input_shape. "
                                  + "; ".join(errors))
        self.input_shape: tuple[int, ...] = shape
        self._traced_model = model

    @property
    def consumers(self) -> list[int]:
        return list(range(1, len(self.layers)))

    @cached_property
    def rules(self) -> list[list[tuple[tuple[int, ...], EdgeRule]]]:
        """Per layer: ``[(producers, rule)]``, producers with the same rule sharing one block."""
        out: list[list[tuple[tuple[int, ...], EdgeRule]]] = [[] for _ in self.layers]
        for c in self.consumers:
            layer = self.layers[c]
            by_key: dict[tuple, tuple[list[int], EdgeRule]] = {}
            for p, inc in layer.inputs.items():
                rule = edge_rule(layer, self.layers[p], inc)
                by_key.setdefault(rule.key(), ([], rule))[0].append(p)
            out[c] = [(tuple(ps), rule) for ps, rule in by_key.values()]
        return out

    def weight(self, model: nn.Module | None, layer: Layer) -> torch.Tensor:
        """The weight tensor of ``layer`` in ``model`` (default: the traced model)."""
        if model is None:
            model = self._traced_model
        obj = model
        for part in layer.param.split("."):
            obj = getattr(obj, part)
        return obj.detach()

    def rolled(self, model: nn.Module | None = None):
        """The rolled graph with the weights of ``model`` (default: the traced model)."""
        return build_rolled(self, self._traced_model if model is None else model)

    def unrolled(self, model: nn.Module | Sequence[nn.Module] | None = None, dtype: torch.dtype = torch.float64):
        """The unrolled graph with the weights of ``model`` (default: the traced model).

        A sequence of models of this architecture gives a batch of graphs on the same nodes
        (e.g. the snapshots of a run), multiplied together by ``UnrolledGraph.apply``.
        """
        batch = [self._traced_model] if model is None else ([model] if isinstance(model, nn.Module) else list(model))
        weights: list[torch.Tensor | None] = [None]
        for c in self.consumers:
            ws = [self.weight(m, self.layers[c]) for m in batch]
            w = torch.stack(ws) if len(ws) > 1 else ws[0][None]
            weights.append(w.to(dtype).abs_() if w.dtype != dtype else w.abs())
        return UnrolledGraph(self, weights)


def rolled_graph(model, input_shape: Sequence[int] | None = None) -> RolledGraph:
    """The rolled graph of ``model`` (Section 2 of the paper).

    Parameters
    ----------
    model
        a ``torch.fx``-traceable network (see :class:`paperlib.graph.GraphPlan`).
    input_shape
        shape of one input without the batch axis, e.g. ``(3, 32, 32)``. ``None`` guesses it:
        ``model.input_shape`` if present, else the first weighted layer's input channels (or
        features) at the sides 32, 16, 28, 64, 224, keeping the first the network accepts.

    Returns
    -------
    RolledGraph
        ``.adjacency`` (symmetric CSR, float64), ``.layers``, ``.operator``, ``.to_networkx()``.

    Examples
    --------
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
    >>> g = rolled_graph(net, input_shape=(1, 4, 4))
    >>> [(name, s.stop - s.start) for name, s in g.layers]
    [('input', 1), ('0', 2), ('3', 3)]
    >>> g.adjacency.shape, g.n_edges
    ((6, 6), 8)
    """
    return GraphPlan(model, input_shape).rolled()


def unrolled_graph(model, input_shape: Sequence[int], dtype: torch.dtype = torch.float64) -> UnrolledGraph:
    """The unrolled graph of ``model`` on inputs of ``input_shape`` (Rieck et al., 2019).

    Parameters
    ----------
    model
        a ``torch.fx``-traceable network (see :class:`paperlib.graph.GraphPlan`).
    input_shape
        one input without the batch axis, e.g. ``(3, 32, 32)``: the unrolled graph depends on it.
    dtype
        precision of the matrix-free products (float64 by default; float32 halves the memory
        and time at about 1e-7 relative error).

    Returns
    -------
    UnrolledGraph
        ``.operator`` (``LinearOperator``), ``.materialize()``, ``.n_edges``, ``.nbytes``.

    Examples
    --------
    >>> import numpy as np, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
    >>> u = unrolled_graph(net, (1, 4, 4))
    >>> u.n_nodes, u.n_edges   # 16 + 8 + 3 nodes; 2*9*4 conv + 3*8 linear multiplications
    (27, 96)
    >>> x = np.random.default_rng(0).random(u.n_nodes)
    >>> bool(np.allclose(u.operator @ x, u.materialize() @ x))
    True
    """
    return GraphPlan(model, input_shape).unrolled(dtype=dtype)
