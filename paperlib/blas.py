"""Convolutions and linear layers whose every GEMM runs on one BLAS: the same bits on Intel and AMD.

torch's own CPU convolutions and linear layers call oneDNN, NNPACK or MKL. oneDNN and NNPACK
block their sums by the CPU's cache sizes and model; MKL honours ``MKL_CBWR=AVX2`` only on Intel
CPUs and picks its own branch elsewhere (measured on an AMD EPYC: every ``sgemm`` reports
``CNR:AUTO``). A network trained through any of them comes out with other bits on the other
vendor. Here every matrix product of a training step and of the unrolled graph goes through
numpy's OpenBLAS instead, whose kernels and cache blocking :mod:`paperlib.kernels` pins
(``OPENBLAS_CORETYPE=Haswell``, ``OPENBLAS_L2_SIZE``); the evaluation relies on the same library
and gives the same bits on both vendors.

How a convolution becomes one GEMM per pass:

* outputs are channel-major: ``(N, F, Ho, Wo)`` tensors whose memory is a contiguous
  ``(F, N, Ho, Wo)``, so the GEMM writes them directly (no permute); ReLU, pooling and the
  residual additions take any layout, and :class:`BatchNorm2d` is given a contiguous NCHW copy
  (ATen's batch norm sums in an order that follows the layout);
* forward: the input, zero-padded into channel-major memory, is copied into the patch matrix
  ``cols`` of shape ``(g, C/g*kh*kw, N*Ho*Wo)`` by ``kh*kw`` strided copies, one per kernel offset
  (no copy at all for a 1x1 convolution with stride 1 on a channel-major input); the output is
  ``W @ cols``, one GEMM over the whole batch;
* grad-weight: ``dY @ cols.T``; grad-input: for stride 1 the convolution of the padded output
  gradient with the flipped kernel (one more GEMM), for strided convolutions ``W.T @ dY`` gives
  the patch gradients, added back by ``kh*kw`` strided additions in a fixed order (col2im);
* groups are a batch of GEMMs (numpy's stacked ``matmul``), so a depthwise or grouped
  convolution needs no Python loop either.

Where the time of a training step goes (``benchmarks/bench_gemm.py --profile-step``): on the
default's small networks the strided copies (patch matrices, padding) cost about as much as the
GEMMs themselves: their inner runs are image rows of 2 to 16 floats.

Summation orders are fixed by the shapes alone, so the same specification gives the same bits
on every CPU of the pinned class. Dropout's mask comes from torch's CPU generator
(``torch.rand``: a Mersenne twister whose floats are exact), not from MKL's random streams,
which torch uses for ``bernoulli_`` with a scalar probability.

:func:`portable_layers` swaps the classes of a model's ``nn.Conv2d``, ``nn.Linear`` and
``nn.Dropout`` modules in place, so parameters, ``state_dict`` keys and snapshots are those of
the plain model; :func:`plain_layers` undoes it. :func:`conv2d`, :func:`conv2d_input_grad` and
:func:`matmul` are the functional forms (used by :mod:`paperlib.graph.unrolled`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

Pair = tuple[int, int]


# --------------------------------------------------------------------------- matrix products
def _blasable(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its last two axes form a BLAS matrix (one unit stride), else a copy."""
    if t.dim() >= 2:
        s0, s1 = t.stride(-2), t.stride(-1)
        r, c = t.shape[-2], t.shape[-1]
        if (s1 == 1 and s0 >= max(c, 1)) or (s0 == 1 and s1 >= max(r, 1)):
            return t
    return t.contiguous()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` for 2-D or stacked 3-D CPU tensors, computed by numpy's (pinned) OpenBLAS.

    ``out`` may be any view whose last two axes are a BLAS matrix (one unit stride); the
    product is written into it without a copy.
    """
    a, b = _blasable(a), _blasable(b)
    if out is None:
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        out = torch.empty((*batch, a.shape[-2], b.shape[-1]), dtype=a.dtype)
    if out.numel():
        if a.shape[-1] == 0:
            out.zero_()
        else:
            with np.errstate(all="ignore"):  # as torch: a diverging run gives inf and NaN silently; the trainer detects it
                np.matmul(_np(a), _np(b), out=_np(out))
    return out


# --------------------------------------------------------------------------- convolution
def _channel_major(x: torch.Tensor) -> bool:
    """Whether an ``(N, C, H, W)`` tensor lies in memory as a contiguous ``(C, N, H, W)``."""
    return x.transpose(0, 1).is_contiguous()


def _pair(v: int | Sequence[int]) -> Pair:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _padding(padding: int | Sequence[int] | str, kernel: Pair, dilation: Pair) -> tuple[int, int, int, int]:
    """(top, bottom, left, right); ``"same"`` as torch pads it (the odd pixel at the bottom/right)."""
    if not isinstance(padding, (str, int)) and len(padding) == 4:
        return tuple(int(p) for p in padding)  # type: ignore[return-value]
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = _pair(padding)  # type: ignore[arg-type]
    return (ph, ph, pw, pw)


class _Geometry:
    """Shapes and strides of one convolution (input ``(N, C, H, W)``, weight ``(F, C/g, kh, kw)``)."""

    def __init__(self, x_shape: Sequence[int], w_shape: Sequence[int], stride, padding, dilation, groups: int):
        self.n, self.c, self.h, self.w = (int(s) for s in x_shape)
        self.f, cg, self.kh, self.kw = (int(s) for s in w_shape)
        self.g = int(groups)
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.pad = _padding(padding, (self.kh, self.kw), self.dilation)
        if self.c != cg * self.g or self.f % self.g:
            raise ValueError(f"paperlib.blas: input of {self.c} channels, weight {tuple(w_shape)} and groups={groups} "
                             "do not fit together")
        self.cg, self.fg = cg, self.f // self.g
        self.hp = self.h + self.pad[0] + self.pad[1]
        self.wp = self.w + self.pad[2] + self.pad[3]
        self.ho = (self.hp - self.dilation[0] * (self.kh - 1) - 1) // self.stride[0] + 1
        self.wo = (self.wp - self.dilation[1] * (self.kw - 1) - 1) // self.stride[1] + 1
        if self.ho < 1 or self.wo < 1:
            raise ValueError(f"paperlib.blas: a {self.kh}x{self.kw} kernel does not fit an input of {self.h}x{self.w} "
                             f"with padding {self.pad}")
        self.rows = self.n * self.ho * self.wo
        self.k = self.kh * self.kw * self.cg

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """The input zero-padded, in channel-major memory: ``(C, N, Hp, Wp)`` contiguous, returned
        with its NCHW shape (a view; no copy where ``x`` is already channel-major and unpadded)."""
        if not any(self.pad) and _channel_major(x):
            return x
        t, b, l, r = self.pad
        xp = x.new_zeros((self.c, self.n, self.hp, self.wp)).transpose(0, 1)
        xp[:, :, t:t + self.h, l:l + self.w] = x
        return xp

    def cols(self, x: torch.Tensor) -> torch.Tensor:
        """The patch matrices ``(g, C/g*kh*kw, N*Ho*Wo)``: rows in the weight's (c, kh, kw) order,
        columns in (n, ho, wo) order. ``kh*kw`` strided copies from the channel-major padded
        input, one per kernel offset; their inner runs are rows of the image."""
        xp = self.padded(x).transpose(0, 1)  # (C, N, Hp, Wp), contiguous
        if (self.kh, self.kw, self.stride) == (1, 1, (1, 1)):
            return xp.reshape(self.g, self.k, self.rows)  # a 1x1 convolution: the input itself
        out = torch.empty((self.c, self.kh, self.kw, self.n, self.ho, self.wo), dtype=x.dtype)
        (st_h, st_w), (d_h, d_w) = self.stride, self.dilation
        for i in range(self.kh):
            for j in range(self.kw):
                out[:, i, j].copy_(xp[:, :, i * d_h:i * d_h + st_h * (self.ho - 1) + 1:st_h,
                                      j * d_w:j * d_w + st_w * (self.wo - 1) + 1:st_w])
        return out.view(self.g, self.k, self.rows)

    def weight_matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """``(g, F/g, C/g*kh*kw)``: the weight itself, no copy."""
        return weight.detach().reshape(self.g, self.fg, self.k)

    def output(self, dtype: torch.dtype) -> torch.Tensor:
        """A new ``(N, F, Ho, Wo)`` tensor in channel-major memory (``(F, N, Ho, Wo)`` contiguous)."""
        hw = self.ho * self.wo
        return torch.empty_strided((self.n, self.f, self.ho, self.wo), (hw, self.n * hw, self.wo, 1), dtype=dtype)

    def gemm_view(self, y: torch.Tensor) -> torch.Tensor:
        """The ``(g, F/g, N*Ho*Wo)`` matrices of a tensor made by :meth:`output` (a view)."""
        return y.transpose(0, 1).view(self.g, self.fg, self.rows)

    def grad_rows(self, grad_out: torch.Tensor) -> torch.Tensor:
        """The output gradient as ``(g, F/g, N*Ho*Wo)`` (a view where it is channel-major, else a copy)."""
        gt = grad_out.transpose(0, 1)
        if not gt.is_contiguous():
            gt = gt.contiguous()
        return gt.view(self.g, self.fg, self.rows)

    def transposed(self) -> "_Geometry | None":
        """For stride 1: the convolution whose output is the input gradient (the output gradient
        padded by ``d*(k-1) - pad`` and convolved with the flipped, transposed kernel); ``None``
        where that padding would be negative or the stride is not 1 (then :meth:`col2im`)."""
        if self.stride != (1, 1):
            return None
        (dh, dw), (t, b, l, r) = self.dilation, self.pad
        eh, ew = dh * (self.kh - 1), dw * (self.kw - 1)
        pad = (eh - t, eh - b, ew - l, ew - r)
        if min(pad) < 0:
            return None
        return _Geometry((self.n, self.f, self.ho, self.wo), (self.c, self.fg, self.kh, self.kw), 1, pad,
                         self.dilation, self.g)

    def transposed_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """The kernel of :meth:`transposed`: ``(C, F/g, kh, kw)``, flipped in space."""
        w = weight.detach().reshape(self.g, self.fg, self.cg, self.kh, self.kw).flip(3, 4)
        return w.transpose(1, 2).reshape(self.c, self.fg, self.kh, self.kw)

    def input_grad(self, grad_out: torch.Tensor, weight: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The gradient with respect to the input: one GEMM over the output gradient's patches
        (stride 1), or the patch gradients added back by :meth:`col2im` (strided convolutions);
        ``rows``: :meth:`grad_rows` of ``grad_out`` where the caller has it already."""
        tg = self.transposed()
        if tg is not None:
            return _forward(tg, grad_out, self.transposed_weight(weight), None)
        wm = self.weight_matrix(weight)
        rows = self.grad_rows(grad_out) if rows is None else rows
        return self.col2im(matmul(wm.transpose(1, 2), rows))

    def col2im(self, dcols: torch.Tensor) -> torch.Tensor:
        """Add the patch gradients ``(g, C/g*kh*kw, N*Ho*Wo)`` back into a contiguous ``(N, C, H, W)``
        gradient, in a fixed order: kernel row, kernel column."""
        gx = dcols.new_zeros((self.c, self.n, self.hp, self.wp))
        d = dcols.view(self.c, self.kh, self.kw, self.n, self.ho, self.wo)
        (st_h, st_w), (d_h, d_w) = self.stride, self.dilation
        for i in range(self.kh):
            for j in range(self.kw):
                rows = slice(i * d_h, i * d_h + st_h * (self.ho - 1) + 1, st_h)
                cols = slice(j * d_w, j * d_w + st_w * (self.wo - 1) + 1, st_w)
                gx[:, :, rows, cols] += d[:, i, j]
        t, _, l, _ = self.pad
        return gx[:, :, t:t + self.h, l:l + self.w].contiguous().transpose(0, 1)


def _forward(geo: _Geometry, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
             cols: torch.Tensor | None = None) -> torch.Tensor:
    cols = geo.cols(x) if cols is None else cols
    y = geo.output(x.dtype)
    matmul(geo.weight_matrix(weight), cols, out=geo.gemm_view(y))
    if bias is not None:
        y += bias.detach().view(1, geo.f, 1, 1)
    return y


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):  # type: ignore[override]
        geo = _Geometry(x.shape, weight.shape, stride, padding, dilation, groups)
        cols = geo.cols(x)
        ctx.geo, ctx.has_bias = geo, bias is not None
        ctx.cols = cols if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(weight)
        return _forward(geo, x, weight, bias, cols)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        geo = ctx.geo
        (weight,) = ctx.saved_tensors
        gx = gw = gb = None
        gt = geo.grad_rows(grad_out) if ctx.needs_input_grad[1] or ctx.has_bias else None
        if ctx.needs_input_grad[0]:
            gx = geo.input_grad(grad_out, weight, gt)
        if gt is not None:
            if ctx.needs_input_grad[1]:
                gw = matmul(gt, ctx.cols.transpose(1, 2)).view(weight.shape)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                gb = gt.view(geo.f, geo.rows).sum(1)
        return gx, gw, gb, None, None, None, None


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> torch.Tensor:
    """``F.conv2d`` with its GEMMs on OpenBLAS (differentiable; output in channels-last memory)."""
    return _Conv2d.apply(x, weight, bias, stride, padding, dilation, groups)


def conv2d_input_grad(grad_out: torch.Tensor, weight: torch.Tensor, input_size: Sequence[int], stride=1,
                      padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """The gradient of :func:`conv2d` with respect to an input of ``input_size`` (``N, C, H, W``):
    ``F.conv_transpose2d`` with the output padding that gives that size."""
    return _Geometry(input_size, weight.shape, stride, padding, dilation, groups).input_grad(grad_out, weight)


# --------------------------------------------------------------------------- linear
class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        x2 = _blasable(x.reshape(-1, x.shape[-1]))
        ctx.save_for_backward(x2, weight)
        ctx.shape, ctx.has_bias = x.shape, bias is not None
        y = torch.empty((*x.shape[:-1], weight.shape[0]), dtype=x.dtype)
        y2 = matmul(x2, weight.detach().t(), out=y.view(-1, weight.shape[0]))
        if bias is not None:
            y2 += bias.detach()
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x2, weight = ctx.saved_tensors
        g2 = _blasable(grad_out.reshape(-1, grad_out.shape[-1]))
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = matmul(g2, weight.detach()).view(ctx.shape)
        if ctx.needs_input_grad[1]:
            gw = matmul(g2.t(), x2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` with its GEMMs on OpenBLAS (differentiable)."""
    return _Linear.apply(x, weight, bias)


def dropout(x: torch.Tensor, p: float, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """``F.dropout`` with its mask drawn by ``torch.rand`` on torch's default CPU generator."""
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = (torch.rand(x.shape, dtype=x.dtype) >= p).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x.mul_(keep) if inplace else x * keep


# --------------------------------------------------------------------------- modules
class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` computed by :func:`conv2d` (zero padding only)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError(f"paperlib.blas: padding_mode={self.padding_mode!r} is not supported (zeros only)")
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear(input, self.weight, self.bias)


class Dropout(nn.Dropout):
    """``nn.Dropout`` computed by :func:`dropout`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout(input, self.p, self.training, self.inplace)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` on a contiguous NCHW copy of its input.

    :class:`Conv2d` writes its output in channel-major memory; ATen's batch norm sums its
    statistics in an order that follows the memory layout, so it is given the layout torch's own
    convolution writes (and that the committed runs were trained with)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return super().forward(input.contiguous())


_SWAP = {nn.Conv2d: Conv2d, nn.Linear: Linear, nn.Dropout: Dropout, nn.BatchNorm2d: BatchNorm2d}
_BACK = {v: k for k, v in _SWAP.items()}


def portable_layers(model: nn.Module) -> nn.Module:
    """Make every ``nn.Conv2d``, ``nn.Linear`` and ``nn.Dropout`` of ``model`` (exactly those
    classes, not subclasses) compute through this module; in place, returns ``model``."""
    for m in model.modules():
        if type(m) in _SWAP:
            m.__class__ = _SWAP[type(m)]
    return model


def plain_layers(model: nn.Module) -> nn.Module:
    """Undo :func:`portable_layers`; in place, returns ``model``."""
    for m in model.modules():
        if type(m) in _BACK:
            m.__class__ = _BACK[type(m)]
    return model
