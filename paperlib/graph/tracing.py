"""Tracing a network with ``torch.fx`` and guessing its input shape.

The network is traced in eval mode whatever its current mode (and put back afterwards), so
that branches taken only in training (the auxiliary heads of GoogLeNet and Inception v3)
are never part of its graph: the graph of a network does not depend on its train/eval mode.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.fx
import torch.nn as nn

__all__ = ["DEFAULT_SIDES", "infer_input_shape", "symbolic_trace", "trace"]

#: sides tried, in order, when the input shape of a convolutional network must be guessed
DEFAULT_SIDES: tuple[int, ...] = (32, 16, 28, 64, 224)


def infer_input_shape(model: nn.Module) -> list[tuple[int, ...]]:
    """Candidate input shapes (without the batch axis) of ``model``, most likely first.

    ``model.input_shape`` when the model has that attribute; ``(in_features,)`` when the
    first weighted layer is an ``nn.Linear``; else ``(in_channels, s, s)`` of the first
    ``nn.Conv2d`` for the sides ``s`` of :data:`DEFAULT_SIDES` (32, 16, 28, 64, 224), of
    which :func:`trace` keeps the first that runs through the network.
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


def symbolic_trace(model: nn.Module) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace`` of ``model`` in eval mode (its modes are restored after)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return torch.fx.symbolic_trace(model)
    except Exception as exc:
        raise NotImplementedError(
            f"{type(model).__name__} cannot be traced by torch.fx.symbolic_trace "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); the graph walker "
            "needs a traceable network (no data-dependent Python control flow)") from exc
    finally:
        for m, flag in modes:
            m.train(flag)


def trace(model: nn.Module, input_shape: Sequence[int] | None = None):
    """Trace ``model`` and find an input shape it runs on.

    Returns
    -------
    (graph_module, input_shape)
        the ``torch.fx.GraphModule`` (traced in eval mode) and the shape, without the batch
        axis, of one input the network accepts (``input_shape`` when given).
    """
    gm = symbolic_trace(model)
    candidates = [tuple(int(s) for s in input_shape)] if input_shape is not None else infer_input_shape(model)
    errors = []
    for shape in candidates:
        try:
            run_shapes(gm, shape)
            return gm, shape
        except Exception as exc:  # wrong input size: try the next candidate
            errors.append(f"{shape}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise ValueError(f"{type(model).__name__} does not run on the input shape(s) tried; pass input_shape. "
                     + "; ".join(errors))


def run_shapes(gm: torch.fx.GraphModule, shape: Sequence[int]) -> torch.Tensor:
    """Run ``gm`` once in eval mode on a batch of one zero input of ``shape`` (no gradients)."""
    p = next(iter(gm.parameters()), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    modes = [(m, m.training) for m in gm.modules()]
    gm.eval()
    try:
        with torch.no_grad():
            return gm(torch.zeros((1, *shape), dtype=dtype))
    finally:
        for m, flag in modes:
            m.train(flag)
