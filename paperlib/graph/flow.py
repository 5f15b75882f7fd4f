"""The channel flow of a network: which producer elements feed every element of every value.

:class:`FlowWalker` interprets a ``torch.fx`` graph node by node, like
``torch.fx.Interpreter``: every node is run once on concrete tensors (a batch of one zero
input, eval mode, no gradients), which gives the shapes and the values of non-tensor nodes
(sizes, index buffers), and beside it a :class:`Flow` is computed for every tensor value.
A flow maps every *producer* (the network input, or a weighted layer) that reaches the value
to an :class:`Incidence`: the 0/1 matrix ``M`` with ``M[e, q] = 1`` when element ``q`` of the
producer's output reaches element ``e`` of the value through operations without weights.

The walker dispatches on module types and on callables (method names for ``call_method``
nodes, the only name ``torch.fx`` records for them), never on the names of modules or nodes.
Every operation falls in one routing kind (one method of :class:`FlowWalker` each), which
says how it moves the flow; both graphs read the same incidences, so a routing kind has one
meaning in the rolled and in the unrolled graph:

* weighted -- ``nn.Conv2d``, ``nn.Linear``, and ``F.conv2d`` / ``F.linear`` whose
  weight is a parameter of the network: a new node set (a *layer*), whose input incidences
  are recorded; its output is fed by itself only.
* elementwise -- activations, normalisation, dropout and arithmetic (``+ - * /``,
  ``torch.maximum``, ...): an element of the result is fed by the elements of every tensor
  operand it is computed from, after broadcasting. Parameters and constants feed nothing
  (biases, normalisation and layer-scale parameters create no edges). *Squeeze-excitation*
  follows from this rule: in ``x * sigmoid(fc2(...))`` element ``(k, h, w)`` of the product
  is fed by the producers of ``x[k, h, w]`` and by unit ``k`` of ``fc2``, so the layer that
  reads the gated map is joined to both, as at a residual sum.
* movement -- view/reshape/flatten/unflatten, transpose/permute, indexing and
  slicing (``x[:, perm]``, ``x[:, :, ::2, ::2]``), chunk/split/unbind (tuples), cat/stack,
  ``F.pad`` (every mode: padded elements are fed by nothing, or by the copied element),
  channel shuffle, pixel (un)shuffle, expand/repeat, flip/roll, nearest-neighbour upsampling.
  Each output element is a copy of at most one input element; the walker finds which by
  running the same operation on tensors of element indices, so no rule is written per op.
* pooling -- 2-D max/average/adaptive/power-average pooling: element ``(c, i, j)``
  is fed by every element of its window in channel ``c``. The windows are read by running
  the operation on probe tensors, not from its arguments.
* reduction -- mean/sum/amax/amin/max/min/std/var/logsumexp over given axes: an
  element of the result is fed by every element it reduces.

Values are computed on a zero input; a weighted layer returns zeros of its output shape
(computed on the meta device) instead of computing its convolution.

Any other operation on a tracked value makes the value *unfollowable*; a weighted layer
that reads an unfollowable value raises :class:`UnsupportedGraphError`, naming the module
(qualified name and type), the operation and the construct. An unfollowable value that no
weighted layer reads (e.g. the softmax of the logits) does not change the graph. A module
or operation with weights of its own that is not a supported weighted layer is refused at
once (its edges would be missing).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .routing import (CONV_FUNCS, ELEMENTWISE_FUNCS, ELEMENTWISE_METHODS, ELEMENTWISE_MODULES, LINEAR_FUNCS, MOVE_FUNCS,
                      MOVE_METHODS, MOVE_MODULES, POOL_FUNCS, POOL_MODULES, PRODUCT_FUNCS, PRODUCT_METHODS,
                      REDUCE_FUNCS, REDUCE_METHODS, _NORM_MODULES, _fetch, _flat_tensors, _has_tensor, _is_tensor,
                      _map_out, _nodes, _pair, _rebuild)
from .values import SUPPORTED, ConvSpec, Flow, Incidence, InputShapeError, Layer, UnsupportedGraphError, _merge, \
    _window_matrix

__all__ = ["FlowWalker"]


class FlowWalker:
    """Interpret ``gm`` on a batch of one zero input of ``input_shape``, following the flow.

    After :meth:`run`, :attr:`layers` lists the input and every weighted layer in the order
    the data reaches them, each with its input incidences.
    """

    def __init__(self, gm: torch.fx.GraphModule, input_shape: tuple[int, ...], model_name: str = "network"):
        self.gm = gm
        self.model_name = model_name
        self.modules = dict(gm.named_modules())
        self.input_shape = tuple(int(s) for s in input_shape)
        self.layers: list[Layer] = [Layer("input", "input", self.input_shape)]
        self.env: dict[torch.fx.Node, Any] = {}
        self.flows: dict[torch.fx.Node, Any] = {}
        self._used: dict[str, str] = {}

    # -- the run
    def run(self) -> list[Layer]:
        p = next(iter(self.gm.parameters()), None)
        dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
        modes = [(m, m.training) for m in self.gm.modules()]
        self.gm.eval()
        first = True
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the walk runs tiny operations: threads would only add waiting
        try:
            with torch.no_grad():
                for node in self.gm.graph.nodes:
                    if node.op == "placeholder":
                        if first:
                            x = torch.zeros((1, *self.input_shape), dtype=dtype)
                            self.env[node] = x
                            self.flows[node] = Flow(tuple(x.shape), {0: Incidence.identity(x.numel())})
                            first = False
                        elif node.args:
                            self.env[node] = node.args[0]
                            self.flows[node] = None
                        else:
                            raise UnsupportedGraphError(f"{self.model_name}: forward takes a second input "
                                                        f"{node.name!r}; only one input is supported")
                        continue
                    if node.op == "output":
                        continue
                    if node.op == "get_attr":
                        self.env[node] = _fetch(self.gm, node.target)
                        self.flows[node] = None
                        continue
                    out = self._concrete(node)
                    self.env[node] = out
                    self.flows[node] = self._flow(node, out)
        finally:
            torch.set_num_threads(threads)
            for m, flag in modes:
                m.train(flag)
        return self.layers

    def _concrete(self, node: torch.fx.Node) -> Any:
        try:
            return self._evaluate(node)
        except UnsupportedGraphError:
            raise
        except Exception as exc:
            raise InputShapeError(f"{self.model_name}: {self.where(node)} fails on the input shape "
                                  f"{self.input_shape}: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc

    def _evaluate(self, node: torch.fx.Node) -> Any:
        """Run one node. Weighted layers only need their output's shape (every value is a
        function of the zero input): they return zeros, their shape computed on the meta
        device, so that no convolution is computed."""
        args = torch.fx.node.map_arg(node.args, lambda n: self.env[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: self.env[n])
        if node.op == "call_module":
            mod = self.modules[node.target]
            if type(mod) in (nn.Conv2d, nn.Linear) and len(args) == 1 and not kwargs and _is_tensor(args[0]):
                x = args[0]
                if isinstance(mod, nn.Linear):
                    if x.shape[-1] != mod.in_features:
                        raise RuntimeError(f"Linear expects {mod.in_features} features, got {tuple(x.shape)}")
                    return x.new_zeros((*x.shape[:-1], mod.out_features))
                meta = mod._conv_forward(x.to("meta"), torch.empty_like(mod.weight, device="meta"), None)
                return x.new_zeros(meta.shape)
            return mod(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        obj, *rest = args
        return getattr(obj, node.target)(*rest, **kwargs)

    # -- where, for messages
    def where(self, node: torch.fx.Node) -> str:
        if node.op == "call_module":
            mod = self.modules[node.target]
            loc = f"module '{node.target}' ({type(mod).__name__})"
            op = type(mod).__name__
        else:
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                qual, cls = list(stack.values())[-1]
                loc = f"module '{qual}' ({getattr(cls, '__name__', cls)})"
            else:
                loc = f"the forward of {self.model_name}"
            t = node.target
            op = t if isinstance(t, str) else getattr(t, "__name__", str(t))
            op = f"{'Tensor.' if node.op == 'call_method' else ''}{op}"
        return f"{loc}, operation {op} (fx node '{node.name}')"

    def _refuse(self, node: torch.fx.Node, construct: str) -> UnsupportedGraphError:
        return UnsupportedGraphError(f"{self.model_name}: {self.where(node)}: {construct}. {SUPPORTED}")

    def _poison(self, node: torch.fx.Node, out: Any, construct: str) -> Any:
        reason = f"{self.where(node)}: {construct}"
        return _map_out(out, lambda t: Flow(tuple(t.shape), poison=reason))

    # -- dispatch
    def _flow(self, node: torch.fx.Node, out: Any) -> Any:
        mod = self.modules[node.target] if node.op == "call_module" else None
        target = node.target
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            return self._weighted_module(node, mod, out)
        if node.op == "call_function" and (target in CONV_FUNCS or target in LINEAR_FUNCS):
            return self._weighted_function(node, out)
        if mod is not None and not isinstance(mod, _NORM_MODULES) and any(True for _ in mod.parameters()):
            raise self._refuse(node, f"a module with weights of type {type(mod).__name__} is not a supported "
                                     "weighted layer (its edges would be missing)")
        tracked = [n for n in _nodes((node.args, node.kwargs)) if self.flows.get(n) is not None]
        if not tracked:
            return None
        if not _has_tensor(out):
            return None  # sizes, dtypes, ...
        # getitem of a tuple of flows
        if node.op == "call_function" and target in (operator.getitem, getattr) and \
                not _is_tensor(self.env[node.args[0]]):
            src = self.flows.get(node.args[0])
            if isinstance(src, Flow):  # an unfollowable tuple
                return src
            if src is None:
                return None
            key = node.args[1]
            if target is getattr:
                fields = getattr(type(self.env[node.args[0]]), "_fields", None) or ("values", "indices")
                key = list(fields).index(key)
            return src[key]
        poisoned = [self.flows[n] for n in tracked if isinstance(self.flows[n], Flow) and self.flows[n].poison]
        if poisoned:
            return _map_out(out, lambda t: Flow(tuple(t.shape), poison=poisoned[0].poison))
        is_fn, is_meth = node.op == "call_function", node.op == "call_method"
        if (mod is not None and isinstance(mod, ELEMENTWISE_MODULES)) or (is_fn and target in ELEMENTWISE_FUNCS) or \
                (is_meth and target in ELEMENTWISE_METHODS):
            return self._elementwise(node, tracked, out)
        if (mod is not None and isinstance(mod, POOL_MODULES)) or (is_fn and target in POOL_FUNCS):
            return self._pooling(node, mod, tracked, out)
        if (is_fn and target in REDUCE_FUNCS) or (is_meth and target in REDUCE_METHODS):
            second = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
            if isinstance(second, torch.fx.Node) and _is_tensor(self.env[second]):  # torch.max(a, b)
                return self._elementwise(node, tracked, out)
            return self._reduction(node, tracked, out)
        if mod is not None and isinstance(mod, nn.Upsample):
            if mod.mode != "nearest":
                return self._poison(node, out, f"upsampling mode {mod.mode!r} mixes neighbouring elements")
            return self._movement(node, mod, tracked, out)
        if is_fn and target is F.interpolate:
            mode = node.kwargs.get("mode", node.args[3] if len(node.args) > 3 else "nearest")
            if mode != "nearest":
                return self._poison(node, out, f"interpolation mode {mode!r} mixes neighbouring elements")
            return self._movement(node, None, tracked, out)
        if (mod is not None and isinstance(mod, MOVE_MODULES)) or (is_fn and target in MOVE_FUNCS) or \
                (is_meth and target in MOVE_METHODS):
            return self._movement(node, mod, tracked, out)
        if (is_fn and target in PRODUCT_FUNCS) or (is_meth and target in PRODUCT_METHODS):
            params = [n for n in _nodes((node.args, node.kwargs)) if n.op == "get_attr"]
            if params:
                raise self._refuse(node, "a matrix product with a parameter is a weighted layer the walker does "
                                         "not know (use nn.Linear or F.linear)")
            return self._poison(node, out, "a product of two activations (attention) mixes elements with "
                                           "data-dependent weights")
        params = [n for n in _nodes((node.args, node.kwargs))
                  if n.op == "get_attr" and _is_tensor(self.env[n]) and self.env[n].dim() >= 2
                  and isinstance(self.env[n], nn.Parameter)]
        if params:
            raise self._refuse(node, f"an operation with the weight parameter '{params[0].target}' is not a "
                                     "supported weighted layer (its edges would be missing)")
        what = type(mod).__name__ if mod is not None else (target if isinstance(target, str) else
                                                          getattr(target, "__name__", str(target)))
        return self._poison(node, out, f"{what} is not an operation the walker can follow "
                                       "(it may mix channels or positions)")

    # -- weighted layers
    def _new_layer(self, node, name, kind, param, x, out, conv=None, module=None) -> Flow:
        flow = self.flows.get(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
        if isinstance(flow, Flow) and flow.poison:
            raise UnsupportedGraphError(f"{self.model_name}: {self.where(node)} reads a value that cannot be "
                                        f"followed: {flow.poison}. {SUPPORTED}")
        if not isinstance(flow, (Flow, type(None))):
            raise self._refuse(node, "the layer reads a tuple")
        if param in self._used:
            raise self._refuse(node, f"the weight '{param}' is used a second time (shared weights, first at fx "
                                     f"node '{self._used[param]}'); each layer must be applied once")
        self._used[param] = node.name
        if not _is_tensor(out) or out.shape[0] != 1 or x.shape[0] != 1:
            raise self._refuse(node, f"the layer's input {tuple(x.shape)} has no batch axis of one")
        if kind == "conv" and x.dim() != 4:
            raise self._refuse(node, f"a 2-D convolution on a {x.dim()}-d input")
        layer = Layer(name, kind, tuple(int(s) for s in out.shape[1:]), param=param,
                      in_shape=tuple(int(s) for s in x.shape[1:]), conv=conv,
                      inputs={} if flow is None else {p: m for p, m in flow.terms.items() if not m.empty},
                      module_type=type(module).__name__ if module is not None else "functional", module=module)
        self.layers.append(layer)
        return Flow(tuple(out.shape), {len(self.layers) - 1: Incidence.identity(out.numel())})

    def _weighted_module(self, node, mod, out):
        x = self.env[node.args[0]]
        if isinstance(mod, nn.Conv2d):
            spec = ConvSpec(_pair(mod.kernel_size), _pair(mod.stride),
                            mod.padding if isinstance(mod.padding, str) else _pair(mod.padding),
                            _pair(mod.dilation), int(mod.groups), mod.padding_mode)
            return self._new_layer(node, node.target, "conv", f"{node.target}.weight", x, out, spec, mod)
        return self._new_layer(node, node.target, "linear", f"{node.target}.weight", x, out, None, mod)

    def _weighted_function(self, node, out):
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        bound = dict(zip(names, node.args))
        bound.update(node.kwargs)
        w = bound.get("weight")
        if not isinstance(w, torch.fx.Node) or w.op != "get_attr":
            raise self._refuse(node, "the weight of this convolution/linear layer is computed in forward, not a "
                                     "parameter (weight standardisation, dynamic weights)")
        if self.flows.get(w) is not None:
            raise self._refuse(node, "the weight depends on the input")
        x = self.env[bound["input"]] if isinstance(bound.get("input"), torch.fx.Node) else None
        if x is None:
            raise self._refuse(node, "the layer's input is not a tensor of the network")
        name = w.target[:-len(".weight")] if w.target.endswith(".weight") else w.target
        if node.target in LINEAR_FUNCS:
            return self._new_layer(node, name, "linear", w.target, x, out)
        wt = self.env[w]
        conc = lambda k, d: self.env[bound[k]] if isinstance(bound.get(k), torch.fx.Node) else bound.get(k, d)  # noqa: E731
        pad = conc("padding", 0)
        spec = ConvSpec(tuple(int(s) for s in wt.shape[2:]), _pair(conc("stride", 1)),
                        pad if isinstance(pad, str) else _pair(pad), _pair(conc("dilation", 1)),
                        int(conc("groups", 1)))
        return self._new_layer(node, name, "conv", w.target, x, out, spec)

    # -- routing classes
    def _elementwise(self, node, tracked, out):
        if not _is_tensor(out):
            return self._poison(node, out, "an elementwise operation returning a non-tensor")
        shape = tuple(out.shape)
        terms: dict[int, Incidence] = {}
        for a in tracked:
            f = self.flows[a]
            if not isinstance(f, Flow):
                return self._poison(node, out, "an elementwise operation on a tuple")
            if f.shape == shape:
                _merge(terms, f.terms)
                continue
            try:
                j = torch.broadcast_to(torch.arange(f.numel).reshape(f.shape), shape).reshape(-1).numpy()
            except RuntimeError:
                return self._poison(node, out, f"operands of shapes {f.shape} and {shape} do not broadcast")
            _merge(terms, {p: m.gather(j) for p, m in f.terms.items()})
        return Flow(shape, terms)

    def _movement(self, node, mod, tracked, out):
        """Run the operation on tensors of element indices (1-based as float64, 0 = nothing)."""
        outs = _flat_tensors(out)
        merged: list[dict[int, Incidence]] = [dict() for _ in outs]
        for a in tracked:
            f = self.flows[a]
            if not isinstance(f, Flow):
                return self._poison(node, out, "data movement of a tuple")

            def sub(n: torch.fx.Node, a=a) -> Any:
                v = self.env[n]
                if n is a:
                    return torch.arange(1, v.numel() + 1, dtype=torch.float64).reshape(v.shape)
                if _is_tensor(v) and (v.is_floating_point() or v.is_complex()):
                    return torch.zeros(v.shape, dtype=torch.float64)  # other tensors: fed by nothing here
                return v

            args = torch.fx.node.map_arg(node.args, sub)
            kwargs = torch.fx.node.map_arg(node.kwargs, sub)
            try:
                if node.op == "call_module":
                    res = mod(*args, **kwargs)
                elif node.op == "call_function":
                    res = node.target(*args, **kwargs)
                else:
                    res = getattr(args[0], node.target)(*args[1:], **kwargs)
            except Exception as exc:  # the op refuses float64 indices: cannot follow it
                return self._poison(node, out, f"data movement that could not be replayed on element indices "
                                               f"({type(exc).__name__})")
            rs = _flat_tensors(res)
            if len(rs) != len(outs):
                return self._poison(node, out, "data movement with an unexpected result")
            for i, r in enumerate(rs):
                if tuple(r.shape) != tuple(outs[i].shape):
                    return self._poison(node, out, "data movement with an unexpected result shape")
                j = r.reshape(-1).to(torch.int64).numpy() - 1
                _merge(merged[i], {p: m.gather(j) for p, m in f.terms.items()})
        flows = [Flow(tuple(o.shape), {p: m for p, m in t.items() if not m.empty}) for o, t in zip(outs, merged)]
        return _rebuild(out, iter(flows))

    def _pooling(self, node, mod, tracked, out):
        a = tracked[0]
        f = self.flows[a]
        x = self.env[a]
        values = out[0] if isinstance(out, (tuple, list)) else out
        if len(tracked) > 1 or not isinstance(f, Flow) or x.dim() != 4 or x.shape[0] != 1 or values.dim() != 4:
            return self._poison(node, out, "pooling of other than one 4-d map with a batch of one")
        _, c, h, w = x.shape
        _, c2, ho, wo = values.shape

        def probe(p: torch.Tensor) -> torch.Tensor:
            args = torch.fx.node.map_arg(node.args, lambda n: p if n is a else self.env[n])
            kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: p if n is a else self.env[n])
            r = mod(*args, **kwargs) if mod is not None else node.target(*args, **kwargs)
            return r[0] if isinstance(r, (tuple, list)) else r

        eye_h = torch.zeros((h, 1, h, w), dtype=x.dtype)
        eye_h[torch.arange(h), 0, torch.arange(h), :] = 1
        eye_w = torch.zeros((w, 1, h, w), dtype=x.dtype)
        eye_w[torch.arange(w), 0, :, torch.arange(w)] = 1
        sh = (probe(eye_h)[:, 0] > 0).any(dim=2).T.numpy().astype(float)  # (ho, h)
        sw = (probe(eye_w)[:, 0] > 0).any(dim=1).T.numpy().astype(float)  # (wo, w)
        if c2 != c or sh.shape != (ho, h) or sw.shape != (wo, w):
            return self._poison(node, out, "pooling whose windows could not be probed")
        P = _window_matrix(c, sh, sw)
        pooled = Flow(tuple(values.shape), {p: m.aggregate(P) for p, m in f.terms.items()})
        if isinstance(out, (tuple, list)):  # (values, indices): the indices are not a data flow
            return (pooled,) + tuple(Flow(tuple(t.shape), poison=f"{self.where(node)}: the indices of a max "
                                          "pooling are not a data flow") for t in out[1:])
        return pooled

    def _reduction(self, node, tracked, out):
        a = tracked[0]
        f = self.flows[a]
        x = self.env[a]
        if len(tracked) > 1 or not isinstance(f, Flow):
            return self._poison(node, out, "a reduction over several tracked tensors")
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if isinstance(dim, torch.fx.Node):
            dim = self.env[dim]
        values = out[0] if isinstance(out, (tuple, list)) else out
        nd = x.dim()
        dims = list(range(nd)) if dim is None else [int(d) % nd for d in (dim if isinstance(dim, (tuple, list))
                                                                          else [dim])]
        keep = values.dim() == nd
        coords = np.unravel_index(np.arange(x.numel()), tuple(x.shape))
        kept = [np.zeros_like(c) if i in dims else c for i, c in enumerate(coords)] if keep else \
            [c for i, c in enumerate(coords) if i not in dims]
        oshape = tuple(values.shape)
        rows = np.ravel_multi_index(kept, oshape) if kept else np.zeros(x.numel(), dtype=np.int64)
        P = sp.csr_matrix((np.ones(x.numel()), (rows, np.arange(x.numel()))), shape=(values.numel(), x.numel()))
        red = Flow(oshape, {p: m.aggregate(P) for p, m in f.terms.items()})
        if isinstance(out, (tuple, list)):  # torch.max(x, dim): (values, indices)
            return (red,) + tuple(Flow(tuple(t.shape), poison=f"{self.where(node)}: the indices of a max/min "
                                       "are not a data flow") for t in out[1:])
        return red
