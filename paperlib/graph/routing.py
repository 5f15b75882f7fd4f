"""The routing kinds of the channel-flow walker: which module types and callables are weighted,
elementwise, data movement, pooling or reduction (the dispatch tables), and the helpers that carry
``torch.fx`` arguments. :class:`paperlib.graph.flow.FlowWalker` has one method per kind.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F


def _fns(*names: str, mod=F) -> set:
    return {getattr(mod, n) for n in names if hasattr(mod, n)}


_NORM_MODULES = tuple(getattr(nn, n) for n in (
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm1d",
    "InstanceNorm2d", "InstanceNorm3d", "LocalResponseNorm", "RMSNorm", "PReLU") if hasattr(nn, n))
ELEMENTWISE_MODULES = _NORM_MODULES + tuple(getattr(nn, n) for n in (
    "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Hardswish", "Hardsigmoid",
    "Sigmoid", "Tanh", "Softplus", "Softsign", "Hardtanh", "Tanhshrink", "Threshold", "LogSigmoid", "Hardshrink",
    "Softshrink", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    "Identity") if hasattr(nn, n))
POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)
MOVE_MODULES = tuple(getattr(nn, n) for n in (
    "Flatten", "Unflatten", "ChannelShuffle", "PixelShuffle", "PixelUnshuffle", "ZeroPad1d", "ZeroPad2d",
    "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d", "ReplicationPad1d",
    "ReplicationPad2d", "CircularPad1d", "CircularPad2d") if hasattr(nn, n))

ELEMENTWISE_FUNCS = _fns(
    "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu", "gelu", "silu", "mish",
    "hardswish", "hardsigmoid", "sigmoid", "tanh", "softplus", "softsign", "hardtanh", "hardtanh_", "logsigmoid",
    "tanhshrink", "threshold", "hardshrink", "softshrink", "prelu", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "batch_norm", "layer_norm", "group_norm",
    "instance_norm", "local_response_norm", "normalize", "rms_norm") | _fns(
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "add", "sub", "subtract", "mul", "multiply", "div", "divide",
    "true_divide", "neg", "negative", "exp", "log", "sqrt", "rsqrt", "abs", "clamp", "clip", "clamp_min",
    "clamp_max", "pow", "square", "maximum", "minimum", "erf", "reciprocal", "hardswish", "dropout",
    "batch_norm", "layer_norm", "group_norm", "instance_norm", "selu", "celu", "rrelu", mod=torch) | {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pos, operator.iadd,
    operator.isub, operator.imul, operator.itruediv}
try:  # torchvision's stochastic depth is wrapped as a leaf function: the identity in eval mode
    from torchvision.ops import stochastic_depth as _stochastic_depth

    ELEMENTWISE_FUNCS.add(_stochastic_depth)
except ImportError:  # pragma: no cover - torchvision is a dependency
    pass
ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "add", "add_", "sub", "sub_", "mul", "mul_", "div",
    "div_", "neg", "neg_", "clamp", "clamp_", "clamp_min", "clamp_max", "clip", "pow", "exp", "sqrt", "rsqrt", "abs",
    "square", "reciprocal", "contiguous", "clone", "detach", "float", "double", "half", "bfloat16", "to", "type",
    "type_as", "maximum", "minimum", "hardtanh", "__add__", "__mul__", "__sub__", "__truediv__", "__radd__",
    "__rmul__"}
POOL_FUNCS = _fns("max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d",
                  "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices", "lp_pool2d") | _fns(
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", mod=torch)
REDUCE_FUNCS = _fns("mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "nansum", "nanmean",
                    mod=torch)
REDUCE_METHODS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "nansum", "nanmean"}
MOVE_FUNCS = _fns(
    "flatten", "reshape", "transpose", "permute", "cat", "concat", "concatenate", "stack", "chunk", "split",
    "tensor_split", "unbind", "squeeze", "unsqueeze", "narrow", "select", "flip", "roll", "movedim", "moveaxis",
    "swapaxes", "swapdims", "t", "channel_shuffle", "native_channel_shuffle", "pixel_shuffle", "pixel_unshuffle",
    "index_select", "gather", "take_along_dim", "broadcast_to", "tile", "repeat_interleave", "unflatten", "hstack",
    "vstack", mod=torch) | _fns("pad", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle") | {operator.getitem}
MOVE_METHODS = {
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute", "transpose", "t", "chunk",
    "split", "tensor_split", "unbind", "squeeze", "unsqueeze", "expand", "expand_as", "repeat", "repeat_interleave",
    "narrow", "select", "flip", "roll", "movedim", "swapaxes", "index_select", "gather", "tile", "__getitem__",
    "channel_shuffle"}
CONV_FUNCS = _fns("conv2d") | _fns("conv2d", mod=torch)
LINEAR_FUNCS = _fns("linear")
PRODUCT_FUNCS = _fns("matmul", "mm", "bmm", "einsum", "baddbmm", "addmm", "scaled_dot_product_attention",
                     mod=torch) | _fns("scaled_dot_product_attention", "bilinear") | {operator.matmul}
PRODUCT_METHODS = {"matmul", "mm", "bmm", "__matmul__"}


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _nodes(args: Any) -> list[torch.fx.Node]:
    out: list[torch.fx.Node] = []
    torch.fx.node.map_arg(args, lambda n: out.append(n))
    return out


def _has_tensor(x: Any) -> bool:
    if _is_tensor(x):
        return True
    if isinstance(x, (tuple, list)):
        return any(_has_tensor(v) for v in x)
    return False


def _flat_tensors(x: Any) -> list[torch.Tensor]:
    if _is_tensor(x):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for v in x for t in _flat_tensors(v)]
    return []


def _map_out(x: Any, fn) -> Any:
    """``x`` with every tensor replaced by ``fn(tensor)`` (nested tuples and lists become tuples)."""
    if _is_tensor(x):
        return fn(x)
    if isinstance(x, (tuple, list)):
        return tuple(_map_out(v, fn) for v in x)
    return None


def _rebuild(x: Any, it) -> Any:
    """``x`` with its tensors replaced, in order, by the items of the iterator ``it``."""
    return _map_out(x, lambda _: next(it))


def _fetch(gm: torch.nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
