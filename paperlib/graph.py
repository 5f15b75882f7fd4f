"""Graphs of a convolutional network: the rolled graph (S1) and the unrolled baseline.

Both graphs are read from the data flow of the network, traced with ``torch.fx`` and
annotated with tensor shapes by ``ShapeProp``, never from the order in which modules are
registered; skip connections and shortcut convolutions land where the data goes.

Rolled graph (Section 2 of the paper)
-------------------------------------
Nodes: the input channels, then one node per filter of every ``nn.Conv2d`` and one per unit
of every ``nn.Linear``, in forward (topological) order. An edge joins unit ``k`` of a
producer with unit ``l`` of a consumer that reads it, weighted

* ``||K[l, k, :, :]||_2`` for a consumer convolution with kernel ``K`` (a grouped
  convolution only joins the channels of its group);
* ``|W[l, k]|`` for a consumer linear layer reading a vector;
* ``||W[l, block_k]||_2`` for a consumer linear layer reading a flattened ``C x H x W`` map,
  where ``block_k`` are the ``H*W`` columns that belong to channel ``k``.

Operations without weights pass the identity of a channel on: activations, batch
normalisation (and the other normalisation layers), dropout, pooling, flatten/view and
global averages. Biases and normalisation parameters create no edges.

*Residual additions.* The channels of a sum ``a + b`` are identified with the units of every
layer that produced ``a`` or ``b``: a layer that reads the sum gets edges to all of them,
each weighted by the same kernel-slice norm. In a ResNet block ``relu(bn(conv2(.)) + x)``
the next convolution is therefore joined to ``conv2`` and to every producer of ``x`` (the
previous block's sum, recursively, back to the last shortcut convolution or the stem). A
1x1 shortcut convolution is an ordinary layer with its own nodes. Channel concatenation
(``torch.cat`` along the channels) places the producers side by side. When a consumer
reaches the same producer along several routes, the weights of the routes are added.

Unrolled graph (Rieck et al., 2019)
-----------------------------------
Nodes: one per channel and spatial position of the input and of the output map of every
convolution (one per unit of a linear layer), ordered layer by layer, channel-major. Edges:
one per multiplication of an input position by a weight, weighted ``|w|``; for a single
convolution every (input position, output position) pair meets at most one kernel tap, so
there are no repeated pairs. Pooling has no weights and no nodes of its own: the next
layer's multiplication of a pooled value is an edge to every position of the pooling window
(a 0/1 window-membership matrix folded into that layer; overlapping windows add their
weights). Residual additions are unrolled like the rolled graph's: the positions of a sum
are identified with the positions of every map that produced it. The explicit matrix and
the matrix-free operator apply the same rules and agree to rounding.

References
----------
Rieck, B. et al. (2019). Neural Persistence: A Complexity Measure for Deep Neural Networks
Using Algebraic Topology. ICLR.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator
from torch.fx.passes.shape_prop import ShapeProp

__all__ = [
    "GraphPlan", "RolledGraph", "UnrolledGraph", "rolled_graph", "unrolled_graph", "stack_rolled", "trace",
    "infer_input_shape", "write_size_table", "DEFAULT_MAX_BYTES",
]

#: sides tried, in order, when the input shape of a convolutional network must be guessed
DEFAULT_SIDES: tuple[int, ...] = (32, 16, 28, 64, 224)
#: memory cap of :meth:`UnrolledGraph.materialize` (bytes of the CSR matrix)
DEFAULT_MAX_BYTES: int = 2 * 2**30

_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
                nn.InstanceNorm1d, nn.InstanceNorm2d, nn.LocalResponseNorm, nn.PReLU)
_POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_FN_POOL_ARGS = {  # functional pooling: positional argument names after the input
    "max_pool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "max_pool2d_with_indices": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "_max_pool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "avg_pool2d": ("kernel_size", "stride", "padding", "ceil_mode"),
    "adaptive_avg_pool2d": ("output_size",),
    "adaptive_max_pool2d": ("output_size",),
    "_adaptive_max_pool2d": ("output_size",),
}
_NOT_ELEMENTWISE = {"transpose", "permute", "t", "flip", "roll", "channel_shuffle", "pixel_shuffle",
                    "pixel_unshuffle", "matmul", "bmm", "mm", "einsum", "softmax", "log_softmax"}


# --------------------------------------------------------------------------- tracing
def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def infer_input_shape(model: nn.Module) -> list[tuple[int, ...]]:
    """Candidate input shapes (without the batch axis) of ``model``, most likely first.

    ``model.input_shape`` when the model has that attribute; ``(in_features,)`` when the
    first weighted layer is an ``nn.Linear``; else ``(in_channels, s, s)`` of the first
    ``nn.Conv2d`` for the sides ``s`` of :data:`DEFAULT_SIDES` (32, 16, 28, 64, 224), of
    which :func:`trace` keeps the first that runs through the network. The rolled graph
    does not depend on which side is used, as long as the network accepts it.
    """
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return [tuple(int(s) for s in shape)]
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return [(m.in_features,)]
        if isinstance(m, nn.Conv2d):
            return [(m.in_channels, s, s) for s in DEFAULT_SIDES]
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d or nn.Linear layer: nothing to graph")


def _propagate(gm: torch.fx.GraphModule, x: torch.Tensor) -> None:
    """ShapeProp on fake tensors (shapes only, no arithmetic); real tensors if that fails."""
    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
        try:
            from torch._subclasses.fake_tensor import FakeTensorMode

            ShapeProp(gm, fake_mode=FakeTensorMode(allow_non_fake_inputs=True)).propagate(x)
            return
        except Exception:
            pass
        ShapeProp(gm).propagate(x)


def trace(model: nn.Module, input_shape: Sequence[int] | None = None) -> tuple[torch.fx.GraphModule, tuple[int, ...]]:
    """Symbolically trace ``model`` and annotate every node with its output shape.

    Parameters
    ----------
    model
        a network traceable by ``torch.fx.symbolic_trace``.
    input_shape
        shape of one input without the batch axis, e.g. ``(3, 32, 32)``; ``None`` tries the
        shapes of :func:`infer_input_shape`.

    Returns
    -------
    (graph_module, input_shape)
        nodes carry ``node.meta["tensor_meta"]``; the model runs once, in eval mode, on a
        batch of one zero image, under ``torch.no_grad``.
    """
    gm = torch.fx.symbolic_trace(model)
    candidates = [tuple(int(s) for s in input_shape)] if input_shape is not None else infer_input_shape(model)
    was_training = [(m, m.training) for m in gm.modules()]
    gm.eval()
    errors = []
    try:
        for shape in candidates:
            try:
                p = next(iter(model.parameters()), None)
                dtype = p.dtype if p is not None else torch.float32
                _propagate(gm, torch.zeros((1, *shape), dtype=dtype))
                return gm, shape
            except Exception as exc:  # wrong input size: try the next candidate
                errors.append(f"{shape}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        for m, flag in was_training:
            m.train(flag)
    raise ValueError(f"{type(model).__name__} does not run on the input shape(s) tried; pass input_shape. "
                     + "; ".join(errors))


# --------------------------------------------------------------------------- data-flow routes
@dataclass(frozen=True)
class _Pool:
    """Spatial 0/1 window membership: value[c, i, j] = sum_{h, w} Sh[i, h] Sw[j, w] x[c, h, w]."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    sh: np.ndarray
    sw: np.ndarray


@dataclass(frozen=True)
class _Embed:
    """Channel (feature) embedding at ``offset`` into a concatenation."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    offset: int


@dataclass(frozen=True)
class _Flatten:
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


@dataclass(frozen=True)
class _Route:
    """How the output map of layer ``layer`` reaches a value: the ops applied, in order."""

    layer: int
    ops: tuple = ()


@dataclass(frozen=True)
class _Value:
    shape: tuple[int, ...] | None  # without batch axis; None for non-tensors
    routes: tuple[_Route, ...] = ()


@dataclass
class _Layer:
    """A node set: the input, or one ``nn.Conv2d`` / ``nn.Linear`` call."""

    name: str
    module: nn.Module | None  # None for the input
    out_shape: tuple[int, ...]  # shape of its output map (without batch)
    routes: tuple[_Route, ...] = ()  # where its input comes from (empty for the input)
    in_shape: tuple[int, ...] = ()

    @property
    def units(self) -> int:
        """Number of rolled nodes: channels (or features)."""
        return int(self.out_shape[0])

    @property
    def positions(self) -> int:
        """Number of unrolled nodes: channels x positions."""
        return int(np.prod(self.out_shape))


def _windows(n_in: int, n_out: int, kernel: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """0/1 matrix (n_out x n_in): input positions inside each output window along one axis."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        idx = i * stride - pad + dil * np.arange(kernel)
        m[i, idx[(idx >= 0) & (idx < n_in)]] = 1.0
    return m


def _adaptive_windows(n_in: int, n_out: int) -> np.ndarray:
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        m[i, (i * n_in) // n_out: -((-(i + 1) * n_in) // n_out)] = 1.0
    return m


def _pool_op(kind: str, params: dict[str, Any], in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> _Pool:
    _, h, w = in_shape
    _, oh, ow = out_shape
    if kind.startswith("adaptive"):
        sh, sw = _adaptive_windows(h, oh), _adaptive_windows(w, ow)
    else:
        k = _pair(params["kernel_size"])
        s = _pair(params.get("stride") or params["kernel_size"])
        p = _pair(params.get("padding", 0))
        d = _pair(params.get("dilation", 1))
        sh, sw = _windows(h, oh, k[0], s[0], p[0], d[0]), _windows(w, ow, k[1], s[1], p[1], d[1])
    return _Pool(in_shape, out_shape, sh, sw)


def _shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(s) for s in meta.shape[1:])


def _extend(routes: Iterable[_Route], op: Any) -> tuple[_Route, ...]:
    return tuple(_Route(r.layer, r.ops + (op,)) for r in routes)


def _tensor_args(args: Any, values: dict[torch.fx.Node, _Value]) -> list[torch.fx.Node]:
    out: list[torch.fx.Node] = []
    for a in args:
        if isinstance(a, torch.fx.Node) and values.get(a) is not None and values[a].shape is not None:
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(_tensor_args(a, values))
    return out


def _target_name(node: torch.fx.Node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


class GraphPlan:
    """The data flow of a network, traced once: which layer reads which, through what.

    A plan depends on the architecture only; :meth:`rolled` and :meth:`unrolled` read the
    weights of any model of that architecture (e.g. every snapshot of a training run).

    Parameters
    ----------
    model
        a network traceable by ``torch.fx``, built from ``nn.Conv2d`` and ``nn.Linear`` layers
        with activations, normalisation, dropout, pooling, flatten/view, residual additions and
        channel concatenation.
    input_shape
        one input without the batch axis; ``None`` guesses it (see :func:`infer_input_shape`).
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None):
        gm, shape = trace(model, input_shape)
        self.input_shape: tuple[int, ...] = shape
        self.layers: list[_Layer] = [_Layer("input", None, shape)]
        modules = dict(gm.named_modules())
        values: dict[torch.fx.Node, _Value] = {}
        seen: set[str] = set()
        for node in gm.graph.nodes:
            values[node] = self._follow(node, values, modules, seen)

    # -- the walk through the traced graph
    def _follow(self, node: torch.fx.Node, values: dict, modules: dict, seen: set) -> _Value:
        out = _shape(node)
        if node.op == "placeholder":
            first = not any(n.op == "placeholder" for n in values)
            return _Value(out, (_Route(0),) if first else ())
        if node.op in ("output", "get_attr") or out is None:
            return _Value(out)
        tensors = _tensor_args(list(node.args) + list(node.kwargs.values()), values)
        tracked = [t for t in tensors if values[t].routes]
        name = _target_name(node)
        if node.op == "call_module":
            mod = modules[node.target]
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                if node.target in seen:
                    raise NotImplementedError(f"module {node.target!r} is called twice (shared weights)")
                seen.add(node.target)
                src = values[node.args[0]]
                if isinstance(mod, nn.Conv2d) and len(src.shape) != 3:
                    raise NotImplementedError(f"{node.target}: Conv2d on a {len(src.shape)}-d input")
                if isinstance(mod, nn.Linear) and len(src.shape) != 1:
                    raise NotImplementedError(f"{node.target}: Linear on a {len(src.shape)}-d input "
                                              "(flatten the map first)")
                self.layers.append(_Layer(node.target, mod, out, src.routes, src.shape))
                return _Value(out, (_Route(len(self.layers) - 1),))
            if isinstance(mod, _POOL_MODULES) and tracked:
                src = values[tracked[0]]
                kind = "adaptive" if "Adaptive" in type(mod).__name__ else "window"
                params = {k: getattr(mod, k) for k in ("kernel_size", "stride", "padding", "dilation")
                          if hasattr(mod, k)}
                return _Value(out, _extend(src.routes, _pool_op(kind, params, src.shape, out)))
            if any(True for _ in mod.parameters(recurse=False)) and not isinstance(mod, _NORM_LAYERS):
                raise NotImplementedError(f"{node.target}: weighted layer {type(mod).__name__} is not supported "
                                          "(only Conv2d and Linear carry edges)")
            name = type(mod).__name__.lower()
        if not tracked:
            return _Value(out)
        if name in ("cat", "concat", "concatenate"):
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            parts = _tensor_args(node.args[0], values)
            if dim not in (1, -len(out)) and not (dim == -1 and len(out) == 1):
                raise NotImplementedError(f"{node.name}: concatenation along dim {dim}, not the channels")
            routes, offset = [], 0
            for p in parts:
                routes += _extend(values[p].routes, _Embed(values[p].shape, out, offset))
                offset += values[p].shape[0]
            return _Value(out, tuple(routes))
        if name in _NOT_ELEMENTWISE:
            raise NotImplementedError(f"{node.name}: {name} mixes positions or channels; not supported")
        if len(tracked) > 1:
            if any(values[t].shape != out for t in tracked):
                raise NotImplementedError(
                    f"{node.name} ({name}) combines tensors of shapes {[values[t].shape for t in tracked]} "
                    f"into {out}; only same-shape additions/products are supported")
            return _Value(out, tuple(r for t in tracked for r in values[t].routes))
        src = values[tracked[0]]
        ins = src.shape
        if name in _FN_POOL_ARGS or name.startswith(("maxpool", "avgpool", "adaptive")):
            if out == ins and "adaptive" not in name:
                return _Value(out, src.routes)
            names = _FN_POOL_ARGS.get(name, ())
            params = dict(zip(names, node.args[1:]))
            params.update({k: v for k, v in node.kwargs.items() if k in names})
            if "output_size" not in names and "kernel_size" not in params:
                raise NotImplementedError(f"{node.name}: cannot read the pooling parameters of {name}")
            kind = "adaptive" if "adaptive" in name else "window"
            return _Value(out, _extend(src.routes, _pool_op(kind, params, ins, out)))
        if out == ins:
            return _Value(out, src.routes)  # elementwise: activation, dropout, normalisation, ...
        if len(ins) == 3 and len(out) == 1 and out[0] == int(np.prod(ins)):
            return _Value(out, _extend(src.routes, _Flatten(ins, out)))  # flatten / view(N, -1)
        if len(ins) == 3 and out in ((ins[0], 1, 1), (ins[0],)):  # global pooling (mean over H, W)
            pooled = _Pool(ins, (ins[0], 1, 1), np.ones((1, ins[1])), np.ones((1, ins[2])))
            routes = _extend(src.routes, pooled)
            if len(out) == 1:
                routes = _extend(routes, _Flatten((ins[0], 1, 1), out))
            return _Value(out, routes)
        raise NotImplementedError(f"cannot follow the data through {node.name} ({name}): "
                                  f"shape {ins} -> {out}")

    # -- node sets
    @property
    def consumers(self) -> list[int]:
        return list(range(1, len(self.layers)))

    def _weights(self, model: nn.Module | None, layer: _Layer) -> torch.Tensor:
        mod = layer.module if model is None else model.get_submodule(layer.name)
        return mod.weight.detach()

    # -- rolled
    def rolled(self, model: nn.Module | None = None) -> "RolledGraph":
        """The rolled graph with the weights of ``model`` (default: the traced model).

        Every weight is read once: the kernel-slice norms of a layer are computed in one call
        and shared, without copies, by all the producers whose units reach the same input
        channels (the branches of a residual sum).
        """
        groups: list[tuple[int, tuple[int, ...], np.ndarray]] = []
        sizes = [layer.units for layer in self.layers]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        for c in self.consumers:
            layer = self.layers[c]
            w = self._weights(model, layer)
            by_place: dict[tuple[int, int, int], list[int]] = {}
            for route in layer.routes:
                offset, g = _rolled_offset(route, self.layers[route.layer].out_shape)
                by_place.setdefault((offset, sizes[route.layer], g), []).append(route.layer)
            if isinstance(layer.module, nn.Conv2d):
                full = _conv_norms(w, layer.module.groups)
                for (offset, n_p, g), producers in by_place.items():
                    groups.append((c, tuple(producers), full[:, offset:offset + n_p]))
            else:
                for (offset, n_p, g), producers in by_place.items():
                    groups.append((c, tuple(producers), _linear_norms(w[:, offset:offset + n_p * g], n_p, g)))
        names = [(layer.name, slice(int(starts[i]), int(starts[i + 1]))) for i, layer in enumerate(self.layers)]
        return RolledGraph(names, groups, int(starts[-1]))

    # -- unrolled
    def unrolled(self, model: nn.Module | Sequence[nn.Module] | None = None,
                 dtype: torch.dtype = torch.float64) -> "UnrolledGraph":
        """The unrolled graph with the weights of ``model`` (default: the traced model).

        A sequence of models of this architecture gives a batch of graphs on the same nodes
        (e.g. the snapshots of a run), multiplied together by :meth:`UnrolledGraph.apply`.
        """
        batch = [model] if model is None or isinstance(model, nn.Module) else list(model)
        weights: list[torch.Tensor | None] = [None]
        for c in self.consumers:
            ws = [self._weights(m, self.layers[c]) for m in batch]
            w = torch.stack(ws) if len(ws) > 1 else ws[0][None]
            weights.append(w.to(dtype).abs_() if w.dtype != dtype else w.abs())
        return UnrolledGraph(self, weights)


def _rolled_offset(route: _Route, shape: tuple[int, ...]) -> tuple[int, int]:
    """Where the producer's units land in the consumer's input: the first feature reached by
    unit 0, and the number of features per unit (``H*W`` after a flatten, else 1)."""
    offset, g = 0, 1
    for op in route.ops:
        if isinstance(op, _Embed):
            offset += op.offset
        elif isinstance(op, _Flatten):
            hw = int(np.prod(op.in_shape[1:]))
            offset, g = offset * hw, g * hw
    return offset, g


def _sq_norms(w: np.ndarray) -> np.ndarray:
    """L2 norm along the last axis of a float array, returned as float64."""
    if w.shape[-1] == 1:
        return np.abs(w[..., 0], dtype=np.float64)
    return np.sqrt(np.einsum("...k,...k->...", w, w), dtype=np.float64)


def _conv_norms(w: torch.Tensor, groups: int) -> np.ndarray:
    """``||K[l, k, :, :]||_2`` as a (filters x input channels) float64 array."""
    co, cig = w.shape[:2]
    norms = _sq_norms(w.numpy().reshape(co, cig, -1))
    if groups == 1:
        return norms
    full = np.zeros((co, cig * groups))
    cog = co // groups
    for gi in range(groups):
        full[gi * cog:(gi + 1) * cog, gi * cig:(gi + 1) * cig] = norms[gi * cog:(gi + 1) * cog]
    return full


def _linear_norms(w: torch.Tensor, n_units: int, g: int) -> np.ndarray:
    """``|W[l, k]|`` (``g == 1``) or the L2 norm of each unit's ``g`` columns, float64."""
    return _sq_norms(w.numpy().reshape(w.shape[0], n_units, g))


# --------------------------------------------------------------------------- rolled graph
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
        into ``layers``; several producers share one block at a residual sum).
    n
        number of nodes.
    """

    layers: list[tuple[str, slice]]
    groups: list[tuple[int, tuple[int, ...], np.ndarray]]
    n: int

    @property
    def n_nodes(self) -> int:
        return self.n

    @property
    def blocks(self) -> list[tuple[int, int, np.ndarray]]:
        """``[(consumer, producer, B)]``, one per pair of layers (repeated pairs summed)."""
        out: dict[tuple[int, int], np.ndarray] = {}
        for c, producers, b in self.groups:
            for p in producers:
                out[(c, p)] = out[(c, p)] + b if (c, p) in out else b
        return [(c, p, b) for (c, p), b in out.items()]

    @property
    def n_edges(self) -> int:
        """Number of edges: (unit, unit) pairs joined by a weight, zero weights included."""
        return int(sum(b.size for _, _, b in self.blocks))

    @property
    def nbytes(self) -> int:
        """Bytes of :attr:`adjacency` (float64 data, int32 indices and index pointer)."""
        return _csr_bytes(self.n, 2 * self.n_edges)

    def _slice(self, i: int) -> slice:
        return self.layers[i][1]

    @cached_property
    def adjacency(self) -> sp.csr_matrix:
        """Symmetric CSR adjacency (float64, non-negative), assembled block by block.

        Each row of a layer lists its neighbours layer by layer in increasing node order, so
        the matrix is built without sorting: every block is copied once into its place in
        ``data`` (and once transposed).
        """
        blocks = self.blocks
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

    @cached_property
    def operator(self) -> LinearOperator:
        """The adjacency as a matrix-free ``LinearOperator`` on the blocks.

        ``y = A x`` adds, for every group, ``B @ (sum of the producers' x)`` to the consumer
        and ``B.T @ x_consumer`` to every producer: each block is read twice per product,
        however many producers share it.
        """
        sl = [self._slice(i) for i in range(len(self.layers))]
        groups = [(sl[c], [sl[p] for p in producers], b) for c, producers, b in self.groups]
        n = self.n

        def matmat(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float64)
            y = np.zeros((n,) + x.shape[1:])
            for rs, ps, b in groups:
                xs = x[ps[0]] if len(ps) == 1 else sum(x[p] for p in ps)
                y[rs] += b @ xs
                back = b.T @ x[rs]
                for p in ps:
                    y[p] += back
            return y

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


def stack_rolled(graphs: Sequence[RolledGraph]):
    """Products with a batch of rolled graphs of one architecture (e.g. a run's snapshots).

    Returns a function mapping ``X`` of shape ``(len(graphs), n)`` to the rows
    ``A_s @ X[s]``, computed with batched matrix products on the stacked blocks; pass it to
    :func:`paperlib.centrality.eigenvector_centrality_batch`.
    """
    g0 = graphs[0]
    if any(len(g.groups) != len(g0.groups) or g.n != g0.n for g in graphs):
        raise ValueError("the graphs do not share one architecture")
    sl = [g0._slice(i) for i in range(len(g0.layers))]
    stacked = [(sl[c], [sl[p] for p in producers], np.stack([g.groups[i][2] for g in graphs]))
               for i, (c, producers, _) in enumerate(g0.groups)]
    n, nb = g0.n, len(graphs)

    def apply(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(nb, n)
        y = np.zeros((nb, n))
        for rs, ps, b in stacked:
            xs = x[:, ps[0]] if len(ps) == 1 else sum(x[:, p] for p in ps)
            y[:, rs] += np.matmul(b, xs[:, :, None])[:, :, 0]
            back = np.matmul(x[:, None, rs], b)[:, 0]
            for p in ps:
                y[:, p] += back
        return y

    return apply


def rolled_graph(model: nn.Module, input_shape: Sequence[int] | None = None) -> RolledGraph:
    """The rolled graph of ``model`` (Section 2 of the paper).

    Parameters
    ----------
    model
        a ``torch.fx``-traceable network of ``nn.Conv2d`` and ``nn.Linear`` layers.
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


def _csr_bytes(n: int, nnz: int) -> int:
    idx = 4 if max(nnz, n) < 2**31 else 8
    return int(nnz * (8 + idx) + (n + 1) * idx)


# --------------------------------------------------------------------------- unrolled graph
def _conv_geometry(mod: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    k = _pair(mod.kernel_size)
    s, d = _pair(mod.stride), _pair(mod.dilation)
    if mod.padding_mode != "zeros":
        raise NotImplementedError(f"padding_mode={mod.padding_mode!r} is not supported in the unrolled graph")
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            p = (0, 0)
        else:  # "same"
            total = [d[i] * (k[i] - 1) for i in range(2)]
            if any(t % 2 for t in total):
                raise NotImplementedError("padding='same' with asymmetric padding is not supported")
            p = (total[0] // 2, total[1] // 2)
    else:
        p = _pair(mod.padding)
    return k, s, p, d


def _tap_pattern(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid (tap, out, in) triples along one axis of a convolution."""
    a, o = np.meshgrid(np.arange(k), np.arange(n_out), indexing="ij")
    i = o * s - p + a * d
    ok = (i >= 0) & (i < n_in)
    return a[ok], o[ok], i[ok]


def _route_matrix(route: _Route, shape: tuple[int, ...]) -> sp.csr_matrix | None:
    """Sparse matrix of a route (value positions x producer positions); None for the identity."""
    mat = None
    for op in route.ops:
        if isinstance(op, _Flatten):
            continue
        if isinstance(op, _Pool):
            c = op.in_shape[0]
            m = sp.kron(sp.identity(c, format="csr"), sp.kron(sp.csr_matrix(op.sh), sp.csr_matrix(op.sw)),
                        format="csr")
        else:  # _Embed
            n_in, n_out = int(np.prod(op.in_shape)), int(np.prod(op.out_shape))
            start = op.offset * (n_in // op.in_shape[0])
            m = sp.csr_matrix((np.ones(n_in), (np.arange(start, start + n_in), np.arange(n_in))),
                              shape=(n_out, n_in))
        mat = m if mat is None else m @ mat
    return mat


class UnrolledGraph:
    """The unrolled graph of Rieck et al. (2019): one node per channel x position.

    Holds ``|w|`` of every layer and the plan's data flow; :attr:`operator` multiplies by the
    adjacency without storing it (convolutions with ``|K|`` and their transposes),
    :meth:`materialize` builds the explicit sparse matrix when it fits in memory.

    Attributes
    ----------
    layers
        ``[(name, slice)]`` of node ids, the input first.
    shapes
        output map shape of every layer (without batch).
    """

    def __init__(self, plan: GraphPlan, weights: list[torch.Tensor | None]):
        self.plan = plan
        self.weights = weights
        sizes = [layer.positions for layer in plan.layers]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.layers = [(layer.name, slice(int(starts[i]), int(starts[i + 1])))
                       for i, layer in enumerate(plan.layers)]
        self.shapes = [layer.out_shape for layer in plan.layers]
        self.n = int(starts[-1])
        #: torch threads used by the products (small convolutions run fastest on one; None:
        #: keep torch's setting)
        self.threads: int | None = 1

    @property
    def n_nodes(self) -> int:
        return self.n

    # -- structure without weights
    def _block_patterns(self):
        """Per (consumer, route): channel, row and column 0/1 patterns whose Kronecker product
        is the block's sparsity pattern (weights taken as non-zero)."""
        for c in self.plan.consumers:
            layer = self.plan.layers[c]
            mod = layer.module
            for route in layer.routes:
                src = self.plan.layers[route.layer]
                # walk the route backwards from the consumer's input to the producer's map
                if isinstance(mod, nn.Conv2d):
                    k, s, p, d = _conv_geometry(mod)
                    cin = layer.in_shape[0]
                    chan = np.kron(np.eye(mod.groups), np.ones((mod.out_channels // mod.groups, cin // mod.groups)))
                    ph = np.zeros((layer.out_shape[1], layer.in_shape[1]))
                    _, o, i = _tap_pattern(layer.in_shape[1], layer.out_shape[1], k[0], s[0], p[0], d[0])
                    ph[o, i] = 1
                    pw = np.zeros((layer.out_shape[2], layer.in_shape[2]))
                    _, o, i = _tap_pattern(layer.in_shape[2], layer.out_shape[2], k[1], s[1], p[1], d[1])
                    pw[o, i] = 1
                    spatial = True
                else:
                    chan, ph, pw, spatial = np.ones((layer.out_shape[0], layer.in_shape[0])), None, None, False
                for op in reversed(route.ops):
                    if isinstance(op, _Flatten):
                        if spatial:
                            raise NotImplementedError("flatten between convolutions")
                        cin = op.in_shape[0]
                        hw = int(np.prod(op.in_shape[1:]))
                        chan = chan.reshape(chan.shape[0], cin, hw).max(axis=2)
                        ph = np.ones((1, op.in_shape[1]))
                        pw = np.ones((1, op.in_shape[2]))
                        spatial = True
                    elif isinstance(op, _Pool):
                        ph, pw = (ph @ op.sh > 0).astype(float), (pw @ op.sw > 0).astype(float)
                    else:
                        chan = chan[:, op.offset:op.offset + op.in_shape[0]]
                if not spatial:
                    ph = pw = np.ones((1, 1))
                yield c, route.layer, chan, ph, pw

    @cached_property
    def n_edges(self) -> int:
        """Edges of the explicit graph (counted from the sparsity patterns, without building it).

        Exact unless one consumer reaches one producer along several routes, where the count
        is an upper bound (overlapping pairs counted once per route).
        """
        return int(sum(np.count_nonzero(ch) * np.count_nonzero(ph) * np.count_nonzero(pw)
                       for _, _, ch, ph, pw in self._block_patterns()))

    @property
    def nbytes(self) -> int:
        """Bytes the explicit CSR matrix needs (float64 data, int32/int64 indices)."""
        return _csr_bytes(self.n, 2 * self.n_edges)

    # -- matrix-free
    @property
    def batch(self) -> int:
        """Number of graphs held (snapshots sharing the architecture)."""
        return int(self.weights[1].shape[0]) if len(self.weights) > 1 else 1

    @cached_property
    def _pools(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        dtype = self.weights[1].dtype if len(self.weights) > 1 else torch.float64
        pools = {}
        for layer in self.plan.layers:
            for route in layer.routes:
                for op in route.ops:
                    if isinstance(op, _Pool) and id(op) not in pools:
                        pools[id(op)] = (torch.from_numpy(op.sh).to(dtype), torch.from_numpy(op.sw).to(dtype))
        return pools

    def _forward_route(self, x: torch.Tensor, route: _Route) -> torch.Tensor:
        s = x.shape[0]
        for op in route.ops:
            if isinstance(op, _Pool):
                sh, sw = self._pools[id(op)]
                x = sh @ x.reshape(s, *op.in_shape) @ sw.T
            elif isinstance(op, _Flatten):
                x = x.reshape(s, *op.out_shape)
            else:
                y = x.new_zeros((s, *op.out_shape))
                y[:, op.offset:op.offset + op.in_shape[0]] = x.reshape(s, *op.in_shape)
                x = y
        return x

    def _backward_route(self, y: torch.Tensor, route: _Route) -> torch.Tensor:
        s = y.shape[0]
        for op in reversed(route.ops):
            if isinstance(op, _Pool):
                sh, sw = self._pools[id(op)]
                y = sh.T @ y.reshape(s, *op.out_shape) @ sw
            elif isinstance(op, _Flatten):
                y = y.reshape(s, *op.in_shape)
            else:
                y = y.reshape(s, *op.out_shape)[:, op.offset:op.offset + op.in_shape[0]]
        return y.reshape(s, -1)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``A_s @ x_s`` for every graph ``s`` of the batch: ``x`` of shape ``(batch, n)``.

        For every layer, the forward product (``conv2d`` with ``|K|``, or ``|W| @``) goes from
        the producers' positions to the layer's and the transposed product
        (``conv_transpose2d``, ``|W|.T @``) back; the graphs of a batch run together as the
        groups of one grouped convolution. Pooling windows and concatenations are applied
        as the same 0/1 matrices as in :meth:`materialize`. Runs on :attr:`threads` threads.
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
            x_t = torch.from_numpy(np.ascontiguousarray(x_np)).to(dtype)
            y = torch.zeros_like(x_t)
            nb = self.batch
            for c in plan.consumers:
                layer = plan.layers[c]
                w = weights[c]
                sc = layers[c][1]
                inp = None
                for route in layer.routes:
                    r = self._forward_route(x_t[:, layers[route.layer][1]], route)
                    inp = r if inp is None else inp + r
                xc = x_t[:, sc]
                if isinstance(layer.module, nn.Conv2d):
                    k, st, p, d = _conv_geometry(layer.module)
                    g = layer.module.groups * nb
                    wf = w.reshape(-1, *w.shape[2:])
                    cin, h, wd = layer.in_shape
                    co, ho, wo = layer.out_shape
                    if inp is not None:
                        y[:, sc] += F.conv2d(inp.reshape(1, nb * cin, h, wd), wf, None, st, p, d, g).reshape(nb, -1)
                    op_h = h - ((ho - 1) * st[0] - 2 * p[0] + d[0] * (k[0] - 1) + 1)
                    op_w = wd - ((wo - 1) * st[1] - 2 * p[1] + d[1] * (k[1] - 1) + 1)
                    back = F.conv_transpose2d(xc.reshape(1, nb * co, ho, wo), wf, None, st, p,
                                              (op_h, op_w), g, d).reshape(nb, -1)
                else:
                    if inp is not None:
                        y[:, sc] += torch.bmm(w, inp.reshape(nb, -1, 1))[..., 0]
                    back = torch.bmm(w.transpose(1, 2), xc[..., None])[..., 0]
                for route in layer.routes:
                    y[:, layers[route.layer][1]] += self._backward_route(back, route)
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

        return LinearOperator((self.n, self.n), matvec=lambda v: matmat(np.ravel(v)), rmatvec=lambda v: matmat(np.ravel(v)),
                              matmat=matmat, dtype=np.float64)

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
            w = self.weights[c][0].to(torch.float64).numpy()
            block = _unrolled_layer(layer, w)
            r0 = self.layers[c][1].start
            for route in layer.routes:
                rm = _route_matrix(route, self.shapes[route.layer])
                b = block if rm is None else (block @ rm).tocoo()
                c0 = self.layers[route.layer][1].start
                rows.append(b.row.astype(np.int64) + r0)
                cols.append(b.col.astype(np.int64) + c0)
                vals.append(b.data)
        if rows:
            r, cc, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        else:
            r = cc = np.zeros(0, dtype=np.int64)
            v = np.zeros(0)
        a = sp.coo_matrix((np.concatenate([v, v]), (np.concatenate([r, cc]), np.concatenate([cc, r]))),
                          shape=(self.n, self.n)).tocsr()
        a.sum_duplicates()
        return a


def _unrolled_layer(layer: _Layer, w: np.ndarray) -> sp.coo_matrix:
    """One layer's multiplications as a (output positions x input positions) COO matrix."""
    mod = layer.module
    n_out, n_in = int(np.prod(layer.out_shape)), int(np.prod(layer.in_shape))
    if isinstance(mod, nn.Linear):
        o = np.repeat(np.arange(w.shape[0]), w.shape[1])
        i = np.tile(np.arange(w.shape[1]), w.shape[0])
        return sp.coo_matrix((w.ravel(), (o, i)), shape=(n_out, n_in))
    k, s, p, d = _conv_geometry(mod)
    co, cig = w.shape[:2]
    g = mod.groups
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


def unrolled_graph(model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype = torch.float64) -> UnrolledGraph:
    """The unrolled graph of ``model`` on inputs of ``input_shape`` (Rieck et al., 2019).

    Parameters
    ----------
    model
        a ``torch.fx``-traceable network of ``nn.Conv2d`` and ``nn.Linear`` layers.
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


# --------------------------------------------------------------------------- size table
def write_size_table(profile) -> "Any":
    """Nodes, edges and memory of the rolled and unrolled graphs of every architecture.

    An untrained model of each population of ``profile`` is built with
    ``paperlib.models.build_model`` (the dataset's input channels and classes, the profile's
    image size). Bytes are those of a CSR matrix holding both directions of every edge
    (float64 weights, int32 indices below 2**31 entries). Written to
    ``results/<profile>/graph_sizes.csv``.

    Returns
    -------
    pandas.DataFrame
        one row per architecture: arch, model, dataset, image_size, rolled_nodes,
        rolled_edges, rolled_bytes, unrolled_nodes, unrolled_edges, unrolled_bytes,
        unrolled_over_rolled_edges.
    """
    import pandas as pd

    from . import data, models, paths

    rows = []
    for pop in profile.populations:
        info = data.DATASETS[pop.dataset]
        size = profile.image_size[pop.dataset]
        torch.manual_seed(0)
        net = models.build_model(pop.model, info.num_classes, info.in_channels, size, **pop.model_kwargs)
        plan = GraphPlan(net, (info.in_channels, size, size))
        r, u = plan.rolled(), plan.unrolled()
        rows.append({
            "arch": pop.arch, "model": pop.model, "dataset": pop.dataset, "image_size": size,
            "rolled_nodes": r.n_nodes, "rolled_edges": r.n_edges, "rolled_bytes": r.nbytes,
            "unrolled_nodes": u.n_nodes, "unrolled_edges": u.n_edges, "unrolled_bytes": u.nbytes,
            "unrolled_over_rolled_edges": u.n_edges / max(r.n_edges, 1),
        })
    df = pd.DataFrame(rows)
    out = paths.ensure(paths.results_dir(profile.name)) / "graph_sizes.csv"
    df.to_csv(out, index=False)
    return df
